"""Bucket keys, candidate pairs from buckets, and their verification: the library under the dedup jobs (and the
benchmark).

Every kind of duplicate is found the same way: documents get 64-bit bucket keys, equal keys make a bucket, a bucket
makes candidate pairs. Keys: one per LSH band of the MinHash signature (:mod:`moss_data.text.minhash`), one for the
normalized text (exact duplicates) and one for the normalized URL; each key mixes in its scope, so documents of
different scopes never share a bucket, and carries its kind in its top two bits. Near-duplicate candidates are then
verified on their exact shingle Jaccard (or, with ``verify: signature``, on the signature estimate), so precision
does not depend on the banding. Grouping is a numpy sort, never a dictionary of lists.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import xxhash

from moss_data.dedup.lineage import EXACT, NEAR, URL
from moss_data.text.minhash import LSHParams
from moss_data.text.shingles import jaccard

__all__ = ["EXACT", "NEAR", "URL", "band_keys", "bucket_pairs", "candidate_pairs", "hash_key", "scope_seed",
           "shingle_similarity", "signature_similarity", "verify_pairs"]

_MASK = (1 << 64) - 1
_M1, _M2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53
_KIND_SHIFT = np.uint64(62)
_LOW_62 = np.uint64((1 << 62) - 1)


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer on a uint64 array (array arithmetic wraps silently, as wanted)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(_M1)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(_M2)
    return h ^ (h >> np.uint64(33))


def _fmix_int(h: int) -> int:
    h ^= h >> 33
    h = (h * _M1) & _MASK
    h ^= h >> 33
    h = (h * _M2) & _MASK
    return h ^ (h >> 33)


def _tag(h: np.ndarray, kind: int) -> np.ndarray:
    return (h & _LOW_62) | (np.uint64(kind) << _KIND_SHIFT)


def key_kind(keys: np.ndarray) -> np.ndarray:
    return (keys >> _KIND_SHIFT).astype(np.uint8)


@lru_cache(maxsize=256)
def scope_seed(scope: str) -> int:
    return xxhash.xxh3_64_intdigest(scope)


@lru_cache(maxsize=64)
def _band_constants(params: LSHParams, scope: str) -> tuple[np.ndarray, np.ndarray]:
    """Random odd multipliers (bands x rows) and offsets (bands), fixed by the LSH seed and the scope."""
    rng = np.random.default_rng([params.seed, scope_seed(scope)])
    odd = rng.integers(0, 2**63, size=(params.bands, params.rows), dtype=np.uint64) << np.uint64(1)
    multipliers = odd | np.uint64(1)
    return multipliers, rng.integers(0, 2**63, size=params.bands, dtype=np.uint64)


def band_keys(signatures: np.ndarray, params: LSHParams, scope: str = "") -> np.ndarray:
    """``(documents, bands)`` bucket keys: equal band values in the same band and scope give equal keys (a random
    linear combination of the band's rows mod 2^64, then mixed; unequal values collide with negligible probability,
    and a collision only makes a candidate, which verification rejects)."""
    multipliers, offsets = _band_constants(params, scope)
    sig = np.asarray(signatures, dtype=np.uint64).reshape(len(signatures), params.bands, params.rows)
    return _tag(_fmix((sig * multipliers).sum(axis=2, dtype=np.uint64) + offsets), NEAR)


def hash_key(digest: bytes, kind: int, scope: str) -> np.uint64:
    """The bucket key of a 128-bit text or URL hash in a scope."""
    h = _fmix_int(int.from_bytes(digest[:8], "little") ^ ((scope_seed(scope) * 0x9E3779B97F4A7C15) & _MASK))
    return np.uint64((h & ((1 << 62) - 1)) | (kind << 62))


def bucket_pairs(keys: np.ndarray, max_bucket: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Position pairs (i < j) within runs of equal values of sorted ``keys``. A run longer than ``max_bucket``
    (boilerplate that thousands of documents share) pairs each member with its first member only, which keeps the
    pair count linear. Sort each run's members in the order that should win (the first is the star's centre)."""
    n = len(keys)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty
    starts = np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1])
    sizes = np.diff(np.concatenate([starts, [n]]))
    multi = sizes >= 2
    starts, sizes = starts[multi], sizes[multi]
    out_i, out_j = [empty], [empty]
    big = sizes > max_bucket
    if big.any():
        centre, members = starts[big], sizes[big] - 1
        first = np.repeat(centre, members)
        out_i.append(first)
        out_j.append(first + np.arange(members.sum()) - np.repeat(np.cumsum(members) - members, members) + 1)
    starts, sizes = starts[~big], sizes[~big]
    order = np.argsort(sizes, kind="stable")
    starts, sizes = starts[order], sizes[order]
    for size in np.unique(sizes).tolist():  # all pairs of every run of this size at once
        lo, hi = np.searchsorted(sizes, [size, size + 1])
        ti, tj = np.triu_indices(size, 1)
        out_i.append((starts[lo:hi, None] + ti).ravel())
        out_j.append((starts[lo:hi, None] + tj).ravel())
    return np.concatenate(out_i), np.concatenate(out_j)


def candidate_pairs(signatures: np.ndarray, params: LSHParams, max_bucket: int = 1000,
                    include: np.ndarray | None = None) -> set[tuple[int, int]]:
    """Index pairs (i < j) of documents sharing at least one LSH band (``include``: a mask of the documents that
    take part; token-less documents should not)."""
    n = len(signatures)
    docs = np.arange(n) if include is None else np.flatnonzero(include)
    if len(docs) < 2:
        return set()
    keys = band_keys(signatures[docs], params).ravel()
    members = np.repeat(docs, params.bands)
    order = np.lexsort((members, keys))  # by key, then document order: each bucket's first member is its earliest
    i, j = bucket_pairs(keys[order], max_bucket)
    a, b = members[order][i], members[order][j]
    pairs = np.unique(np.stack([a, b], axis=1)[a != b], axis=0)
    return set(map(tuple, pairs.tolist()))


def shingle_similarity(a: np.ndarray, b: np.ndarray, threshold: float) -> float | None:
    """Exact Jaccard of two sorted shingle sets, or None when below ``threshold`` (the size filter first:
    J <= |small| / |large|). A token-less document (empty set) is never a near-duplicate of anything."""
    small, large = sorted((len(a), len(b)))
    if small == 0 or small / large < threshold:
        return None
    sim = jaccard(a, b)
    return sim if sim >= threshold else None


def signature_similarity(a: np.ndarray, b: np.ndarray, threshold: float) -> float | None:
    """The signature estimate of the Jaccard, or None when below ``threshold``."""
    sim = float(np.mean(a == b))
    return sim if sim >= threshold else None


def verify_pairs(
    pairs: set[tuple[int, int]],
    threshold: float,
    shingles: list[np.ndarray] | None = None,
    signatures: np.ndarray | None = None,
) -> dict[tuple[int, int], float]:
    """Pairs whose Jaccard (exact from shingles, else estimated from signatures) is at least ``threshold``."""
    kept = {}
    for i, j in pairs:
        if shingles is not None:
            sim = shingle_similarity(shingles[i], shingles[j], threshold)
        else:
            sim = signature_similarity(signatures[i], signatures[j], threshold)
        if sim is not None:
            kept[(i, j)] = sim
    return kept
