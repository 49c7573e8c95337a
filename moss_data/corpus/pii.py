"""PII and secrets scrubbing with counts.

Replaces e-mail addresses, public IP addresses and secrets (API keys, access tokens, private keys, passwords in
assignments) with placeholders, the convention of BigCode's PII pipeline: ``<EMAIL>``, ``<IP_ADDRESS>``, ``<KEY>``;
and mainland China's personal numbers: mobile numbers ``<PHONE_NUMBER>``, resident ID numbers ``<ID_NUMBER>`` (region,
birth date and MOD 11-2 check character verified) and bank card numbers ``<BANK_CARD>`` (Luhn checked, payment-network
first digit). Each replacement is counted per kind in the step's stats (``pii_email``, ``pii_ip``, ``pii_cn_mobile``,
``pii_cn_id``, ``pii_bank_card``, ``secret_aws_access_key``, ...) and in ``metadata['pii']`` of the document. Private
and reserved IPs (127.0.0.1, 10.x, 192.168.x) and the documentation domains ``example.com/org/net`` are left alone:
they identify nobody.

The Chinese number kinds run on the prose routes only (``cn_routes``): in code, 11- and 16-19-digit literals are
constants and seeds (over the standard library and its site-packages, ~120 eleven-digit constants look like mobile
numbers and ~20 seeds pass Luhn), and BigCode's code PII pipeline leaves phone numbers out for the same reason.
"""

from __future__ import annotations

import re
from collections import Counter

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from moss_data.recipe import StrictModel
from pydantic import Field

from moss_data.text.pii_patterns import (BANK_CARD, CARD_PREFIXES, CN_MOBILE, CN_RESIDENT_ID, DOC_DOMAINS, EMAIL, IPV4,
                                         IPV6, PLACEHOLDER_VALUES, SECRET_PATTERNS, is_bank_card, is_cn_mobile,
                                         is_cn_resident_id, is_public_ip)


class PIIConfig(StrictModel):
    emails: bool = True
    ips: bool = True
    secrets: bool = True
    email_replacement: str = "<EMAIL>"
    ip_replacement: str = "<IP_ADDRESS>"
    secret_replacement: str = "<KEY>"
    cn_mobile: bool = Field(True, description="mainland mobile numbers (1[3-9]x + 8 digits, optional +86)")
    cn_resident_id: bool = Field(True, description="18-character resident ID numbers with a valid region, birth date "
                                 "and MOD 11-2 check character")
    bank_cards: bool = Field(True, description="16-19-digit card numbers passing Luhn")
    phone_replacement: str = "<PHONE_NUMBER>"
    id_replacement: str = "<ID_NUMBER>"
    bank_card_replacement: str = "<BANK_CARD>"
    bank_card_prefixes: tuple[str, ...] = Field(
        CARD_PREFIXES, description="first digits a card number must start with (ISO 7812 payment networks: 3 "
        "Amex/JCB, 4 Visa, 5 Mastercard, 6 UnionPay/Discover); empty: any")
    cn_routes: tuple[str, ...] = Field(
        ("en", "zh", "other"), description="routes whose documents get the Chinese number kinds (mobile, ID, card); "
        "code is left out: its long digit literals are constants and seeds")


def scrub(text: str, cfg: PIIConfig, route: str | None = None) -> tuple[str, Counter]:
    """Returns the scrubbed text and a count of replacements per kind. ``route`` (None: any) decides whether the
    Chinese number kinds apply (:attr:`PIIConfig.cn_routes`)."""
    counts: Counter = Counter()

    def sub(pattern: re.Pattern, kind: str, replacement: str, keep=lambda s: False):
        nonlocal text

        def repl(m: re.Match) -> str:
            whole = m.group(0)
            secret = m.groupdict().get("secret")
            target = secret if secret is not None else whole
            if keep(target):
                return whole
            counts[kind] += 1
            if secret is not None:
                start, end = m.span("secret")
                return whole[: start - m.start()] + replacement + whole[end - m.start() :]
            return replacement

        text = pattern.sub(repl, text)

    if cfg.secrets:
        for kind, pattern in SECRET_PATTERNS.items():
            sub(pattern, f"secret_{kind}", cfg.secret_replacement, keep=lambda s: s in PLACEHOLDER_VALUES)
    if cfg.emails:
        sub(EMAIL, "pii_email", cfg.email_replacement, keep=lambda s: s.lower().endswith(DOC_DOMAINS))
    if cfg.ips:
        sub(IPV4, "pii_ip", cfg.ip_replacement, keep=lambda s: not is_public_ip(s))
        sub(IPV6, "pii_ip", cfg.ip_replacement, keep=lambda s: not is_public_ip(s))
    if route is None or route in cfg.cn_routes:
        # longest first: an ID number is 18 characters, a card 16-19 digits, a mobile number 11
        if cfg.cn_resident_id:
            sub(CN_RESIDENT_ID, "pii_cn_id", cfg.id_replacement, keep=lambda s: not is_cn_resident_id(s))
        if cfg.bank_cards:
            sub(BANK_CARD, "pii_bank_card", cfg.bank_card_replacement,
                keep=lambda s: not is_bank_card(s, cfg.bank_card_prefixes))
        if cfg.cn_mobile:
            sub(CN_MOBILE, "pii_cn_mobile", cfg.phone_replacement, keep=lambda s: not is_cn_mobile(s))
    return text, counts


class PIIScrubber(PipelineStep):
    name = "🔒 PII & secrets"
    type = "✂️ - FORMAT"

    def __init__(self, config: PIIConfig | None = None):
        super().__init__()
        self.config = config or PIIConfig()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                doc.text, counts = scrub(doc.text, self.config, doc.metadata.get("route"))
            self.stat_update("total")
            if counts:
                self.stat_update("docs_with_pii")
                doc.metadata["pii"] = dict(counts)
                for kind, n in counts.items():
                    self.stat_update(kind, value=n)
            yield doc
