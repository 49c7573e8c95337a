"""Exact near-duplicate ground truth: every pair with Jaccard >= t over word 5-gram shingles, found without sampling.

Shingles for the ground truth are one fixed definition for every language: lower-cased ``\\w+`` words with each CJK
character a word of its own, 5 in a row (64-bit hashes, so collisions are negligible). All pairs at or above ``t``
come from prefix filtering (AllPairs): order shingles globally from rarest to most common; two sets with Jaccard
>= t must share a shingle among the first ``|x| - ceil(t|x|) + 1`` of either, so only documents sharing such a
prefix shingle are compared, exactly. No pair is missed; the benchmark's recall is measured against all of them.

Also here: planted near-duplicates, made by random token edits and labelled by their measured Jaccard.
"""

from __future__ import annotations

import math
import random
import re
import unicodedata
from collections import defaultdict

import numpy as np
import xxhash

from moss_data.text.shingles import jaccard

_WORDS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def reference_shingles(text: str, n: int = 5) -> np.ndarray:
    words = _WORDS.findall(unicodedata.normalize("NFKC", text).lower())
    if len(words) < n:
        grams = [" ".join(words)] if words else []
    else:
        grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    return np.unique(np.fromiter((xxhash.xxh3_64_intdigest(g) for g in grams), dtype=np.uint64, count=len(grams)))


def all_pairs(sets: list[np.ndarray], threshold: float) -> dict[tuple[int, int], float]:
    """Every pair (i < j) of shingle sets with exact Jaccard >= threshold."""
    nonempty = [i for i, s in enumerate(sets) if len(s)]
    if not nonempty:
        return {}
    universe, counts = np.unique(np.concatenate([sets[i] for i in nonempty]), return_counts=True)
    rank_of_value = np.lexsort((universe, counts))  # rarest first
    rank = np.empty_like(rank_of_value)
    rank[rank_of_value] = np.arange(len(universe))
    ordered = {}
    for i in nonempty:
        r = rank[np.searchsorted(universe, sets[i])]
        ordered[i] = np.sort(r)
    index: dict[int, list[int]] = defaultdict(list)
    result: dict[tuple[int, int], float] = {}
    for x in sorted(nonempty, key=lambda i: (len(sets[i]), i)):
        size = len(sets[x])
        prefix = ordered[x][: size - math.ceil(threshold * size) + 1]
        candidates = set()
        for token in prefix.tolist():
            candidates.update(index[token])
        for y in candidates:  # len(sets[y]) <= size (processed in size order)
            if len(sets[y]) < threshold * size:
                continue
            sim = jaccard(sets[x], sets[y])
            if sim >= threshold:
                result[(min(x, y), max(x, y))] = sim
        for token in prefix.tolist():
            index[token].append(x)
    return result


def plant_near_duplicate(text: str, rate: float, rng: random.Random, cjk: bool = False) -> str:
    """Copy of ``text`` with each token replaced, deleted or followed by an inserted token at ``rate``."""
    tokens = list(text) if cjk else text.split(" ")
    vocab = tokens or [""]
    out: list[str] = []
    for tok in tokens:
        r = rng.random()
        if r < rate / 3:
            continue  # delete
        if r < 2 * rate / 3:
            out.append(rng.choice(vocab))  # replace
            continue
        out.append(tok)
        if r < rate:
            out.append(rng.choice(vocab))  # insert
    return ("" if cjk else " ").join(out)
