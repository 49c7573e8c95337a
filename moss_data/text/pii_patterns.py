"""The PII and secret patterns shared by the corpus stage's scrubber and the dialogue importer (one list, so the
two cannot drift): e-mail addresses, IPv4/IPv6 addresses, secrets (API keys, tokens, private keys, passwords in
assignments), and mainland China's mobile numbers, resident ID numbers (checksum verified) and bank card numbers
(Luhn checked). Private and reserved IPs and the documentation domains ``example.com/org/net`` identify nobody.
"""

from __future__ import annotations

import ipaddress
import re

# Boundaries are ASCII-only: Chinese writes addresses right next to CJK characters ("邮箱foo@bar.com联系",
# "地址8.8.8.8。"), which Python's \w and \b count as word characters.
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}"
                   r"(?![A-Za-z0-9_])")
# Not a section number: "section 6.2.4.3", "#section-7.1.1.1" (RFC links), "§ 1.2.3.4", "第 6.2.4.3 节" (Chinese
# manuals write 第 ... 节/章 around them).
_SECTION_BEFORE = r"(?<![Ss]ection )(?<![Ss]ection-)(?<!§)(?<!§ )(?<!第)(?<!第 )(?<!第\xa0)"
IPV4 = re.compile(r"(?<![0-9A-Za-z_.])" + _SECTION_BEFORE + r"(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z_.])"
                  r"(?![ \xa0]?[节章条](?!点))")
IPV6 = re.compile(r"(?<![0-9A-Za-z_:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![0-9A-Za-z_:])")

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
    """A global unicast address (multicast groups such as mDNS's 224.0.0.251 name a protocol, not a host)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


# ------------------------------------------------------------------ Chinese PII (mainland China)
# Each pattern finds candidates; a validator then decides (checksum, date, network prefix), so numbers in manuals
# (versions, sizes, timestamps, serials) stay. Boundaries are ASCII-only on purpose: in Chinese text a number sits
# right next to CJK characters ("电话13812345678"), which Python's \w would count as word characters.

# Mobile: 1[3-9]x + 8 digits, written 13812345678, 138 1234 5678, 138-1234-5678, with an optional +86 / 0086 / 86
# country code (glued, or followed by a space or dash) or (+86). Not inside a longer digit run, a version (1.2.3), a
# dashed serial or an identifier.
_NOT_AFTER = r"(?<![0-9A-Za-z_.+*/^\\-])"  # not the tail of a number, identifier, path, formula or version
_NOT_BEFORE = r"(?![0-9A-Za-z_*/^]|[.,:-]\d)"  # nor its head
CN_MOBILE = re.compile(
    _NOT_AFTER
    + r"(?:(?:\(\+?86\)|\+86|0086|86)[ -]?)?"
    + r"(?P<number>1[3-9]\d(?P<sep>[ -]?)\d{4}(?P=sep)\d{4})"
    + _NOT_BEFORE
)
# Resident identity card (GB 11643-1999): 6-digit region, YYYYMMDD birth date, 3-digit sequence, MOD 11-2 check
# character (0-9 or X).
CN_RESIDENT_ID = re.compile(
    _NOT_AFTER + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx]" + _NOT_BEFORE
)
# Bank card: 16-19 digits glued, or 4-4-4-4 groups (plus a last group of 1-3 for 17-19 digits) separated by one
# space or dash used throughout. Looser groupings would join the columns of tables (`free`, `ls -l`) into numbers.
BANK_CARD = re.compile(_NOT_AFTER + r"(?:\d{16,19}|\d{4}(?P<sep>[ -])\d{4}(?P=sep)\d{4}(?P=sep)\d{4}(?:(?P=sep)\d{1,3})?)"
                       + _NOT_BEFORE)

# First two digits of the province-level region codes (GB/T 2260), plus 71/81/82 (Taiwan, Hong Kong, Macau) and 83
# (the 2018 residence permits of Taiwan residents).
CN_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83".split()
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def cn_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of a resident ID number."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS)) % 11]


def is_cn_resident_id(text: str, today=None) -> bool:
    """An 18-character resident ID number whose region, birth date (a real date, not in the future) and check
    character are all valid."""
    import datetime as _dt

    if len(text) != 18 or not text[:17].isdigit() or text[:2] not in CN_PROVINCES:
        return False
    try:
        born = _dt.date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    if born > (today or _dt.date.today()) or born.year < 1880:
        return False
    return cn_id_check_char(text[:17]) == text[17].upper()


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of a card number given as digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# ISO/IEC 7812 major industry identifiers of payment cards: 3 (American Express, JCB, Diners), 4 (Visa), 5
# (Mastercard), 6 (UnionPay 62, Discover, Maestro). Most mainland debit cards are UnionPay (62...).
CARD_PREFIXES = ("3", "4", "5", "6")


def is_bank_card(text: str, prefixes: tuple[str, ...] = CARD_PREFIXES) -> bool:
    """16-19 digits (separators ignored) with a valid Luhn check, a payment-network first digit (when ``prefixes``
    is non-empty) and not one digit repeated (``0000 0000 0000 0000`` passes Luhn)."""
    digits = re.sub(r"[ -]", "", text)
    if not (16 <= len(digits) <= 19 and digits.isdigit()) or len(set(digits)) == 1:
        return False
    if prefixes and not digits.startswith(tuple(prefixes)):
        return False
    return luhn_ok(digits)


def is_cn_mobile(match: str) -> bool:
    """A :data:`CN_MOBILE` match (country code and separators ignored) that is not a placeholder: eight equal
    subscriber digits (13800000000, 18888888888) are examples and padding, not someone's number."""
    digits = re.sub(r"\D", "", match)[-11:]
    return len(digits) == 11 and digits[0] == "1" and len(set(digits[3:])) > 1
