"""Offensive/toxic text filters: English by alt-profanity-check per sentence, Chinese by a word list.

English (route ``en``): every sentence (and line) is scored by alt-profanity-check (a linear model on TF-IDF that
ships inside its wheel: nothing downloads); a sentence at or above ``en_sentence_threshold`` is offensive. A document
is dropped when it has more than ``en_max_offensive_sentences`` offensive sentences [toxic_en_count], or at least
``en_min_offensive_sentences`` of them making up more than ``en_max_offensive_share`` of its sentences
[toxic_en_share]. One flagged sentence never drops a page: technical English trips the model ("Shut down the
system", "kill 1234", "FAT filesystem" score 0.9-0.98), while abusive pages have many.

Chinese (route ``zh``): occurrences of the words of :data:`moss_data.text.offensive.OFFENSIVE_ZH`; dropped with more
than ``zh_max_words`` [toxic_zh_count], or at least ``zh_min_words`` making more than ``zh_max_words_per_1k``
occurrences per 1,000 CJK characters [toxic_zh_density] (an insult quoted once in a long story stays).

A dropped document carries ``metadata['toxicity']`` (counts, and the most offensive sentence or the words found,
shortened) into the exclusion output, where the report takes its examples from.

Defaults measured on the sample corpus: over the 533 English documents that reach routing (28,706 sentences) 13
sentences reach 0.9, at most 2 in one document and never more than 5% of a document's sentences: none is dropped;
none of the 568 Chinese documents contains a listed word.
"""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from pydantic import Field

from moss_data.recipe import StrictModel
from moss_data.text.offensive import english_offense_scores, offensive_zh_words, sentences
from moss_data.text.scripts import CJK

EXAMPLE_CHARS = 80


class ToxicityConfig(StrictModel):
    enabled: bool = Field(True, description="run the English and Chinese toxicity filters")
    en_sentence_threshold: float = Field(0.9, ge=0, le=1, description="alt-profanity-check probability at which a "
                                         "sentence counts as offensive")
    en_max_offensive_sentences: int = Field(5, ge=0, description="more offensive sentences than this: dropped")
    en_max_offensive_share: float = Field(0.1, ge=0, le=1, description="a larger share of offensive sentences: dropped")
    en_min_offensive_sentences: int = Field(2, ge=1, description="the share rule needs at least this many")
    en_max_sentences: int = Field(20_000, description="sentences scored per document (the first ones)")
    zh_max_words: int = Field(3, ge=0, description="more occurrences of listed words than this: dropped")
    zh_max_words_per_1k: float = Field(2.0, ge=0, description="more occurrences per 1,000 CJK characters: dropped")
    zh_min_words: int = Field(2, ge=1, description="the density rule needs at least this many occurrences")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def _rule(n: int, share: float, max_n: int, min_n: int, max_share: float, reasons: tuple[str, str]) -> str | None:
    """Both languages' rule: too many hits, or at least ``min_n`` of them at too high a share."""
    if n > max_n:
        return reasons[0]
    if n >= min_n and share > max_share:
        return reasons[1]
    return None


class _ToxicityFilter(BaseFilter):
    """Drops a document when :meth:`offence` names a reason; its evidence goes to ``metadata['toxicity']``."""

    name = "🤬 Toxicity"

    def __init__(self, config: ToxicityConfig | None = None, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.config = config or ToxicityConfig()

    def offence(self, text: str) -> tuple[str, dict] | None:
        raise NotImplementedError

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        found = self.offence(doc.text)
        if found is None:
            return True
        reason, doc.metadata["toxicity"] = found
        return False, reason


class EnglishToxicityFilter(_ToxicityFilter):
    """Drops English documents with many or mostly offensive sentences; reasons ``toxic_en_count``,
    ``toxic_en_share``."""

    def offence(self, text: str) -> tuple[str, dict] | None:
        c = self.config
        sents = sentences(text)[: c.en_max_sentences]
        if not sents:
            return None
        scores = english_offense_scores(sents)
        flagged = [(p, s) for p, s in zip(scores, sents) if p >= c.en_sentence_threshold]
        n = len(flagged)
        reason = _rule(n, n / len(sents), c.en_max_offensive_sentences, c.en_min_offensive_sentences,
                       c.en_max_offensive_share, ("toxic_en_count", "toxic_en_share"))
        if reason is None:
            return None
        top = max(flagged)
        return reason, {"offensive_sentences": n, "sentences": len(sents), "top_score": round(top[0], 3),
                        "example": _short(top[1])}


class ChineseToxicityFilter(_ToxicityFilter):
    """Drops Chinese documents with many or dense listed offensive words; reasons ``toxic_zh_count``,
    ``toxic_zh_density``."""

    def offence(self, text: str) -> tuple[str, dict] | None:
        c = self.config
        words = offensive_zh_words(text)
        if not words:  # most documents: no need to count their characters
            return None
        n = len(words)
        per_1k = 1000 * n / max(len(CJK.findall(text)), 1)
        reason = _rule(n, per_1k, c.zh_max_words, c.zh_min_words, c.zh_max_words_per_1k,
                       ("toxic_zh_count", "toxic_zh_density"))
        if reason is None:
            return None
        return reason, {"offensive_words": n, "per_1k_chars": round(per_1k, 2),
                        "example": "、".join(sorted(set(words)))}
