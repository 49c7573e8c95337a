"""The PII and secret patterns shared by the corpus stage's scrubber and the dialogue importer (one list, so the
two cannot drift): e-mail addresses, IPv4/IPv6 addresses, secrets (API keys, tokens, private keys, passwords in
assignments). Private and reserved IPs and the documentation domains ``example.com/org/net`` identify nobody.
"""

from __future__ import annotations

import ipaddress
import re

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])")

# name -> pattern; group "secret" (when present) is the part replaced, so `api_key = "..."` keeps its name.
SECRET_PATTERNS: dict[str, re.Pattern] = {
    "private_key": re.compile(
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP )?PRIVATE KEY(?: BLOCK)?-----[\s\S]+?"
        r"-----END (?:RSA |EC |DSA |OPENSSH |PGP )?PRIVATE KEY(?: BLOCK)?-----"
    ),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b"),
    "slack_token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    "openai_key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "stripe_key": re.compile(r"\b[rs]k_live_[0-9A-Za-z]{16,}\b"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"),
    # `password = "hunter2!"`, `API_KEY: 'abc...'`: a quoted literal assigned to a secret-sounding name.
    "assigned_secret": re.compile(
        r"(?i)\b[\w.-]*(?:password|passwd|secret|api_?key|access_?token|auth_?token)[\w.-]*\s*[:=]\s*"
        r"(?P<q>['\"])(?P<secret>[^'\"\s]{8,200})(?P=q)"
    ),
}
PLACEHOLDER_VALUES = frozenset({"<KEY>", "<PASSWORD>", "xxxxxxxx", "********", "changeme", "password"})
DOC_DOMAINS = ("example.com", "example.org", "example.net")



def is_public_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_global
    except ValueError:
        return False


