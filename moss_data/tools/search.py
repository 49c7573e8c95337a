"""Offline web search: BM25 over passages of the project's own cleaned corpus shards.

Passages are ~240-character windows of the clean documents (en and zh routes; MOSS's snippets are that short).
Tokens: lower-cased words, and for Chinese, character bigrams (Chinese has no spaces). Results are the top
passages in the query's language (a query with Chinese characters is Chinese), falling back to any language when
none matches, returned as MOSS snippets. An online provider can replace it behind the same ``search(query, k)``.

Limits (each call is bounded in size and time, whatever the model writes): a query longer than ``MAX_QUERY_CHARS``
is refused with :class:`SearchLimitError` (not cut: a model that writes one is broken, and the refusal is a reason
the caller counts); only the first ``MAX_QUERY_TERMS`` distinct terms are scored; at most ``MAX_K`` passages come
back, each cut to ``MAX_SNIPPET_CHARS`` (ending in "…"); past ``timeout_s`` (checked while scoring) the call raises
:class:`SearchLimitError`. Passages are returned as stored: the registry neutralises format markers in them.
"""

from __future__ import annotations

import heapq
import math
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

from moss_data.io.documents import iter_documents

MAX_QUERY_CHARS = 512
MAX_QUERY_TERMS = 32
MAX_K = 10
MAX_SNIPPET_CHARS = 300
SEARCH_TIMEOUT_S = 2.0
_CHECK_EVERY = 4096  # postings scored between two looks at the clock


class SearchLimitError(ValueError):
    """A query over the size limit, or a search past its time limit."""


_CJK = re.compile(r"[\u4e00-\u9fff]")
_WORD = re.compile(r"[^\W\u4e00-\u9fff]+|[\u4e00-\u9fff]+")


def search_tokens(text: str) -> list[str]:
    out = []
    for piece in _WORD.findall(text.lower()):
        if _CJK.match(piece):
            out += [piece[i : i + 2] for i in range(max(1, len(piece) - 1))]
        else:
            out.append(piece)
    return out


class SearchIndex:
    def __init__(self, passages: list[str], k1: float = 1.5, b: float = 0.75):
        self.passages = passages
        self.is_chinese = [bool(_CJK.search(p)) for p in passages]
        self.k1, self.b = k1, b
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.lengths = []
        for i, p in enumerate(passages):
            counts = Counter(search_tokens(p))
            self.lengths.append(sum(counts.values()))
            for token, tf in counts.items():
                self.postings[token].append((i, tf))
        self.avg_len = sum(self.lengths) / max(len(self.lengths), 1)

    @classmethod
    def from_shards(cls, clean_dir: Path, routes=("en", "zh"), window: int = 240, max_passages: int = 200_000):
        passages: list[str] = []
        for route in routes:
            for d in iter_documents(Path(clean_dir) / route):
                text = " ".join(d["text"].split())
                passages += [text[i : i + window] for i in range(0, len(text), window)]
                if len(passages) >= max_passages:
                    break
        if not passages:
            raise FileNotFoundError(f"search: no documents under {clean_dir}/<route>: run the corpus stage first")
        return cls(passages[:max_passages])

    def search(self, query: str, k: int = 3, timeout_s: float = SEARCH_TIMEOUT_S) -> list[str]:
        if len(query) > MAX_QUERY_CHARS:
            raise SearchLimitError(f"query has {len(query)} characters (limit {MAX_QUERY_CHARS})")
        deadline = time.monotonic() + timeout_s
        scores: Counter = Counter()
        n = len(self.passages)
        for token in list(dict.fromkeys(search_tokens(query)))[:MAX_QUERY_TERMS]:
            posting = self.postings.get(token)
            if not posting:
                continue
            idf = math.log(1 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            for start in range(0, len(posting), _CHECK_EVERY):
                if time.monotonic() >= deadline:
                    raise SearchLimitError(f"search timed out after {timeout_s:g} s")
                for i, tf in posting[start : start + _CHECK_EVERY]:
                    norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg_len)
                    scores[i] += idf * tf * (self.k1 + 1) / norm
        chinese = bool(_CJK.search(query))
        k = max(0, min(k, MAX_K))
        # as sorted(scores, key=score, reverse=True)[:k] (ties keep their order), without sorting every hit
        best = heapq.nlargest(k, (i for i in scores if self.is_chinese[i] == chinese), key=scores.__getitem__)
        best = best or heapq.nlargest(k, scores, key=scores.__getitem__)
        return [snippet(self.passages[i]) for i in best]


def snippet(passage: str) -> str:
    return passage if len(passage) <= MAX_SNIPPET_CHARS else passage[: MAX_SNIPPET_CHARS - 1] + "…"
