"""Language-aware shingles as numpy arrays of 32-bit hashes (stored in uint64 for the MinHash arithmetic).

Tokens per route (text NFKC-normalized first):
- ``en`` / ``other``: lower-cased word runs (``\\w+``); punctuation is dropped, as in datatrove's simplified text.
- ``zh``: each CJK character is a token, other word runs are tokens (datatrove gives Chinese one giant "word" per
  line and so near-zero MinHash recall).
- ``code``: identifiers, keywords and numbers with their case kept; operators, brackets and layout are ignored
  (as tokens they inflate the overlap of unrelated files: pair precision at J >= 0.8 fell to 0.79 on the
  benchmark's code, against 1.0 without them).

A shingle is ``n`` consecutive tokens. Each token is hashed once (xxh3 of its UTF-8), and shingle hashes are built
from the token hashes with vectorized numpy arithmetic: no per-shingle Python string is ever made, which is what
makes signatures fast (see ``just bench-dedup``).
"""

from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np
import xxhash

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN_PATTERNS: dict[str, re.Pattern] = {
    "en": re.compile(r"\w+"),
    "zh": re.compile(rf"[{_CJK}]|[^\W{_CJK}]+"),
    "code": re.compile(r"\w+"),
}
TOKEN_PATTERNS["other"] = TOKEN_PATTERNS["en"]
LOWERCASE = {"en": True, "zh": True, "other": True, "code": False}

# Odd 64-bit multipliers, one per position in a shingle, for combining its token hashes into the shingle hash.
_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD,
     0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9, 0x2545F4914F6CDD1D, 0x9FB21C651E98DF25],
    dtype=np.uint64,
)


def tokenize(text: str, route: str) -> list[str]:
    pattern = TOKEN_PATTERNS.get(route, TOKEN_PATTERNS["en"])
    text = unicodedata.normalize("NFKC", text)
    if LOWERCASE.get(route, True):
        text = text.lower()
    return pattern.findall(text)


_TOKEN_HASHES: dict[str, int] = {}  # token -> xxh3: words repeat, so most tokens are hashed once per process
_TOKEN_CACHE_MAX = 1 << 20


def token_hashes(tokens: list[str]) -> np.ndarray:
    cache = _TOKEN_HASHES
    if len(cache) > _TOKEN_CACHE_MAX:
        cache.clear()
    hashes = [cache.get(t) for t in tokens]
    if None in hashes:
        for i, t in enumerate(tokens):
            if hashes[i] is None:
                hashes[i] = cache[t] = xxhash.xxh3_64_intdigest(t)
    return np.array(hashes, dtype=np.uint64)


_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))  # the ranges of _CJK


_BMP = 0x10000
_WORD = re.compile(r"\w")


@functools.lru_cache(maxsize=1)
def _codepoint_tables() -> tuple[np.ndarray, np.ndarray]:
    """For the Basic Multilingual Plane, whether ``\\w`` matches each code point (found by ``re`` itself, so it is
    the regex's own rule), and for CJK characters the xxh3 of the character (the hash :func:`token_hashes` gives
    it). Built once per process (~20 ms)."""
    word = np.zeros(_BMP, dtype=bool)
    word[[m.start() for m in _WORD.finditer("".join(map(chr, range(_BMP))))]] = True
    cjk_hash = np.zeros(_CJK_RANGES[-1][1] + 1, dtype=np.uint64)
    for lo, hi in _CJK_RANGES:
        cjk_hash[lo : hi + 1] = [xxhash.xxh3_64_intdigest(chr(c)) for c in range(lo, hi + 1)]
    return word, cjk_hash


def _is_word(codepoints: np.ndarray, table: np.ndarray) -> np.ndarray:
    word = table[np.minimum(codepoints, _BMP - 1)]
    astral = np.flatnonzero(codepoints >= _BMP)  # rare (emoji, CJK extension B): asked of the regex one by one
    word[astral] = [_WORD.match(chr(c)) is not None for c in codepoints[astral].tolist()]
    return word


def zh_token_hashes(text: str) -> np.ndarray:
    """``token_hashes(tokenize(text, "zh"))``, vectorized: a CJK character is a token (its hash from a table), a run
    of other word characters is a token (hashed as a string). Chinese text is mostly one-character tokens, so this
    skips a Python string and a lookup per character (it doubled the speed of Chinese signatures)."""
    normalized = unicodedata.normalize("NFKC", text).lower()
    codepoints = np.frombuffer(normalized.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    word_table, cjk_hash = _codepoint_tables()
    cjk = np.zeros(len(codepoints), dtype=bool)
    for lo, hi in _CJK_RANGES:
        cjk |= (codepoints >= lo) & (codepoints <= hi)
    word = _is_word(codepoints, word_table) & ~cjk
    edges = np.diff(np.concatenate(([0], word.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs = token_hashes([normalized[a:b] for a, b in zip(starts.tolist(), ends.tolist())])
    at = np.flatnonzero(cjk)
    positions = np.concatenate([at, starts])
    hashes = np.concatenate([cjk_hash[codepoints[at]], runs])
    return hashes[np.argsort(positions, kind="stable")]


def shingle_hashes(text: str, route: str, n: int = 5) -> np.ndarray:
    """Distinct 32-bit shingle hashes of ``text`` (as uint64). A text shorter than ``n`` tokens is one shingle."""
    hashes = zh_token_hashes(text) if route == "zh" else token_hashes(tokenize(text, route))
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.uint64)
    if len(hashes) < n:
        hashes = np.concatenate([hashes, np.zeros(n - len(hashes), dtype=np.uint64)])
    if n > len(_MIX):
        raise ValueError(f"shingle size {n} > {len(_MIX)} is not supported")
    count = len(hashes) - n + 1
    # a shingle's hash: sum of its token hashes times per-position odd multipliers (mod 2^64), then mixed; in place
    combined = hashes[:count] * _MIX[0]
    product = np.empty(count, dtype=np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        for i in range(1, n):
            np.multiply(hashes[i : i + count], _MIX[i], out=product)
            np.add(combined, product, out=combined)
        np.right_shift(combined, np.uint64(29), out=product)
        np.bitwise_xor(combined, product, out=combined)
        np.multiply(combined, np.uint64(0x94D049BB133111EB), out=combined)
        np.right_shift(combined, np.uint64(32), out=combined)
    combined.sort()
    distinct = np.empty(count, dtype=bool)
    distinct[0] = True
    np.not_equal(combined[1:], combined[:-1], out=distinct[1:])
    return combined[distinct]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted, distinct shingle arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
