"""Scripts and language names: what the stages need to tell Chinese from Latin text without a model."""

from __future__ import annotations

import re
from collections.abc import Iterable

# CJK unified ideographs (with extensions A-F and the compatibility block).
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese (简体中文)"}


def cjk_share(letters: Iterable[str]) -> float:
    """Share of CJK characters among the given characters (0 for none)."""
    letters = list(letters)
    return sum(1 for ch in letters if CJK.match(ch)) / len(letters) if letters else 0.0
