"""Chinese quality filter on character-level statistics.

datatrove gives lid.176's ``zh`` a word tokenizer that does not segment, so every Gopher/C4 rule that counts
"words" sees one giant word per line and rejects all Chinese text. Here each CJK character counts as one unit:
Gopher-style length, symbol, stop-character and repetition rules, with thresholds set on real Chinese documentation
and prose (see tests/test_filters.py), where the English word-based rules would need words.
"""

from __future__ import annotations

from collections import Counter

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from moss_data.recipe import StrictModel
from moss_data.text.scripts import CJK

# High-frequency function characters of modern written Chinese (the role English stop words play in Gopher).
STOP_CHARS = frozenset("的了是在和有我不这也就人都一个上们到说要以会对可他她你为地得着与及等把被从而或之其所")
TERMINAL_PUNCT = tuple("。！？；…」』”）.!?;:：")
BULLETS = ("•", "●", "·", "-", "*", "◆", "■", "▪")


class ChineseQualityConfig(StrictModel):
    enabled: bool = True
    min_cjk_chars: int = 50
    max_chars: int = 1_000_000
    min_cjk_ratio: float = 0.25
    """Share of CJK characters among non-space characters (documentation mixes in Latin commands and names)."""
    min_stop_chars: int = 3
    """Distinct function characters (的, 了, 是, ...) that must appear: lists, tables and menus have few."""
    max_symbol_ratio: float = 0.1
    """'#' and '…' per character, as in Gopher's symbol/word ratio."""
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_terminal_punct_lines_ratio: float = 0.1
    max_dup_line_frac: float = 0.3
    max_dup_line_char_frac: float = 0.2
    top_char_ngram_max: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    """(n, max share of CJK characters covered by the most frequent character n-gram)."""
    dup_char_ngram_max: tuple[tuple[int, float], ...] = ((10, 0.3),)
    """(n, max share of CJK characters inside character n-grams that occur more than once)."""


class ChineseQualityFilter(BaseFilter):
    """Drops Chinese documents that are too short, list-like, symbol-heavy or repetitive; reasons start with ``zh_``."""

    name = "🀄 Chinese quality"

    def __init__(self, config: ChineseQualityConfig | None = None, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.config = config or ChineseQualityConfig()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        c = self.config
        text = doc.text
        if len(text) > c.max_chars:
            return False, "zh_too_long"
        cjk = CJK.findall(text)
        n_cjk = len(cjk)
        if n_cjk < c.min_cjk_chars:
            return False, "zh_too_short"
        non_space = sum(1 for ch in text if not ch.isspace())
        if n_cjk / max(non_space, 1) < c.min_cjk_ratio:
            return False, "zh_low_cjk_ratio"
        if len(STOP_CHARS.intersection(cjk)) < c.min_stop_chars:
            return False, "zh_few_stop_chars"
        if (text.count("#") + text.count("…") + text.count("...")) / max(n_cjk, 1) > c.max_symbol_ratio:
            return False, "zh_symbol_ratio"

        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            if sum(line.startswith(BULLETS) for line in lines) / len(lines) > c.max_bullet_lines_ratio:
                return False, "zh_bullet_lines"
            if sum(line.endswith(("…", "...")) for line in lines) / len(lines) > c.max_ellipsis_lines_ratio:
                return False, "zh_ellipsis_lines"
            if sum(line.endswith(TERMINAL_PUNCT) for line in lines) / len(lines) < c.min_terminal_punct_lines_ratio:
                return False, "zh_no_terminal_punct"
            dup_count, dup_chars = _duplicate_lines(lines)
            if dup_count / len(lines) > c.max_dup_line_frac:
                return False, "zh_dup_line_frac"
            if dup_chars / max(sum(map(len, lines)), 1) > c.max_dup_line_char_frac:
                return False, "zh_dup_line_char_frac"

        chars = "".join(cjk)
        for n, max_share in c.top_char_ngram_max:
            top = _top_ngram_share(chars, n)
            if top > max_share:
                return False, f"zh_top_{n}gram"
        for n, max_share in c.dup_char_ngram_max:
            if _dup_ngram_share(chars, n) > max_share:
                return False, f"zh_dup_{n}gram"
        return True


def _duplicate_lines(lines: list[str]) -> tuple[int, int]:
    seen: set[str] = set()
    dup_count = dup_chars = 0
    for line in lines:
        if line in seen:
            dup_count += 1
            dup_chars += len(line)
        else:
            seen.add(line)
    return dup_count, dup_chars


def _top_ngram_share(chars: str, n: int) -> float:
    """Share of characters covered by the most frequent n-gram (Gopher's top n-gram rule on characters)."""
    if len(chars) < n:
        return 0.0
    counts = Counter(chars[i : i + n] for i in range(len(chars) - n + 1))
    gram, count = counts.most_common(1)[0]
    return count * n / len(chars)


def _dup_ngram_share(chars: str, n: int) -> float:
    """Share of characters inside n-grams seen before (Gopher's duplicate n-gram rule on characters)."""
    if len(chars) < n:
        return 0.0
    seen: set[str] = set()
    covered = bytearray(len(chars))
    for i in range(len(chars) - n + 1):
        gram = chars[i : i + n]
        if gram in seen:
            covered[i : i + n] = b"\x01" * n
        else:
            seen.add(gram)
    return sum(covered) / len(chars)
