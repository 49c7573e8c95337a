"""PII and secrets scrubbing with counts.

Replaces e-mail addresses, public IP addresses and secrets (API keys, access tokens, private keys, passwords in
assignments) with placeholders, the convention of BigCode's PII pipeline: ``<EMAIL>``, ``<IP_ADDRESS>``, ``<KEY>``.
Each replacement is counted per kind in the step's stats (``pii_email``, ``pii_ip``, ``secret_aws_access_key``, ...)
and in ``metadata['pii']`` of the document. Private and reserved IPs (127.0.0.1, 10.x, 192.168.x) and the
documentation domains ``example.com/org/net`` are left alone: they identify nobody.
"""

from __future__ import annotations

import re
from collections import Counter

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from moss_data.recipe import StrictModel
from moss_data.text.pii_patterns import (DOC_DOMAINS, EMAIL, IPV4, IPV6, PLACEHOLDER_VALUES, SECRET_PATTERNS,
                                         is_public_ip)

class PIIConfig(StrictModel):
    emails: bool = True
    ips: bool = True
    secrets: bool = True
    email_replacement: str = "<EMAIL>"
    ip_replacement: str = "<IP_ADDRESS>"
    secret_replacement: str = "<KEY>"


def scrub(text: str, cfg: PIIConfig) -> tuple[str, Counter]:
    """Returns the scrubbed text and a count of replacements per kind."""
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
                doc.text, counts = scrub(doc.text, self.config)
            self.stat_update("total")
            if counts:
                self.stat_update("docs_with_pii")
                doc.metadata["pii"] = dict(counts)
                for kind, n in counts.items():
                    self.stat_update(kind, value=n)
            yield doc
