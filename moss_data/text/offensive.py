"""Offensive-language signals shared by the corpus toxicity filter and the dialogue stage's harmlessness checks.

English: alt-profanity-check (a linear SVM on TF-IDF, trained on ~200k human-labelled comments; its weights ship inside
the wheel, nothing downloads), scored per sentence, since one insult in a long text barely moves the whole text's
score. Chinese: no package with a usable Chinese list exists on PyPI (badwords-zh 1.3 reads a dictionary from a
hard-coded /Tmp path and ships none; sensitive-word 0.5 and erispulse-dfafilter 2.0 ship no words), so the short list
of insults, obscenities and slurs below is written here, chosen to avoid substrings of ordinary words: no 妈的
(我妈妈的), 混蛋 (搅混蛋液), 杂种 (杂种优势), 尼玛 (a Tibetan name), 废物 (废物利用), 我操 (我操作), 智障 (智障人士).
"""

from __future__ import annotations

import functools
import re

OFFENSIVE_ZH = (
    "傻逼", "傻屄", "傻B", "煞笔", "傻叉", "他妈的", "你妈的", "妈了个", "操你妈", "操你大爷", "日你妈", "草泥马",
    "肏", "贱人", "贱货", "骚货", "婊子", "荡妇", "狗娘养的", "王八蛋", "狗东西", "狗杂种", "滚你妈", "去死吧",
    "脑残", "白痴", "蠢货", "蠢猪", "人渣", "死全家", "鸡巴", "屌丝", "娘炮", "死基佬", "黑鬼", "支那", "滚蛋",
)
OFFENSIVE_ZH_RE = re.compile("|".join(map(re.escape, OFFENSIVE_ZH)), re.IGNORECASE)

# Sentence ends: . ! ? followed by space, line breaks, and the Chinese full stops.
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|[\n。！？；]+")


def sentences(text: str) -> list[str]:
    """The non-empty sentences (and lines) of ``text``, stripped."""
    return [s.strip() for s in SENTENCE_BREAK.split(text) if s and s.strip()]


@functools.cache
def _profanity_model():
    """alt-profanity-check's vectorizer and model (loaded on first use: ~1.5 s)."""
    from profanity_check import profanity_check

    return profanity_check.vectorizer, profanity_check.model


def english_offense_scores(texts: list[str]) -> list[float]:
    """alt-profanity-check's probability that each text is offensive."""
    if not texts:
        return []
    vectorizer, model = _profanity_model()
    return [float(p[1]) for p in model.predict_proba(vectorizer.transform(list(texts)))]


def offensive_zh_words(text: str) -> list[str]:
    """Every occurrence of a word of :data:`OFFENSIVE_ZH` in ``text``, in order."""
    return OFFENSIVE_ZH_RE.findall(text)
