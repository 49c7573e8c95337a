"""Code licence filter: keep only files whose licence allows training use, as The Stack and StarCoder did.

The code reader stores an SPDX id in ``metadata['license']`` (a file's own ``SPDX-License-Identifier`` tag, else the
repository's LICENSE/COPYING file; ``other`` for a text it does not recognise, ``unknown`` for no licence file). With
``permissive_only`` a file is kept when its licence is in ``allowed`` (for an SPDX expression such as
``MIT OR GPL-2.0``: when one alternative of an ``OR`` is allowed, or every part of an ``AND``); ``other`` and
``unknown`` are dropped unless ``keep_unknown`` (no licence file means all rights reserved).

Reasons: ``licence_not_permissive`` (a recognised licence outside ``allowed``, e.g. GPL-3.0) and ``licence_unknown``.
"""

from __future__ import annotations

import re

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from pydantic import Field

from moss_data.corpus.code_reader import PERMISSIVE_LICENSES
from moss_data.recipe import StrictModel

UNRECOGNISED = frozenset({"other", "unknown", ""})


class LicenceFilterConfig(StrictModel):
    permissive_only: bool = Field(False, description="drop code files whose licence is not in `allowed`")
    allowed: tuple[str, ...] = Field(
        tuple(sorted(PERMISSIVE_LICENSES)), description="SPDX ids kept (default: the permissive licences)"
    )
    keep_unknown: bool = Field(False, description="keep files with no recognised licence (`other`, `unknown`)")


def licence_allowed(expression: str, allowed: frozenset[str]) -> bool:
    """Whether an SPDX id or a simple expression (``A OR B``, ``A AND B``, ``A WITH exception``) is allowed."""
    expression = re.sub(r"[()]", " ", expression)
    alternatives = re.split(r"\s+OR\s+", expression.strip())
    for alt in alternatives:
        parts = [re.split(r"\s+WITH\s+", p.strip())[0] for p in re.split(r"\s+AND\s+", alt)]
        if all(p.removesuffix("-only").removesuffix("+") in allowed or p in allowed for p in parts):
            return True
    return False


class LicenceFilter(BaseFilter):
    name = "⚖️ Code licence"

    def __init__(self, config: LicenceFilterConfig | None = None, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.config = config or LicenceFilterConfig()
        self._allowed = frozenset(self.config.allowed)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not self.config.permissive_only:
            return True
        licence = str(doc.metadata.get("license") or "unknown")
        if licence in UNRECOGNISED:
            return True if self.config.keep_unknown else (False, "licence_unknown")
        return True if licence_allowed(licence, self._allowed) else (False, "licence_not_permissive")
