"""Near-duplicate candidates from LSH bands of MinHash signatures, and their verification.

Signatures: :mod:`moss_data.text.minhash`. Candidates are verified on their exact shingle Jaccard (or, where shingle
sets do not fit in memory, on the signature estimate), so precision does not depend on the banding.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np

from moss_data.text.minhash import LSHParams
from moss_data.text.shingles import jaccard


def candidate_pairs(signatures: np.ndarray, params: LSHParams, max_bucket: int = 1000) -> set[tuple[int, int]]:
    """Index pairs (i < j) that share at least one band. Buckets larger than ``max_bucket`` (boilerplate that
    hundreds of documents share) contribute pairs of each member with the bucket's first member only, which keeps
    the pair count linear; the verified pairs still connect them."""
    pairs: set[tuple[int, int]] = set()
    n = len(signatures)
    for band in range(params.bands):
        chunk = np.ascontiguousarray(signatures[:, band * params.rows : (band + 1) * params.rows])
        keys = chunk.view(np.dtype((np.void, chunk.dtype.itemsize * params.rows))).ravel()
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for i in range(n):
            buckets[keys[i].tobytes()].append(i)
        for members in buckets.values():
            if len(members) < 2:
                continue
            if len(members) > max_bucket:
                pairs.update((members[0], m) for m in members[1:])
            else:
                pairs.update(combinations(members, 2))
    return pairs


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
            a, b = shingles[i], shingles[j]
            small, large = sorted((len(a), len(b)))
            if large == 0 or small / large < threshold:  # size filter: J <= |small| / |large|
                continue
            sim = jaccard(a, b)
        else:
            sim = float(np.mean(signatures[i] == signatures[j]))
        if sim >= threshold:
            kept[(i, j)] = sim
    return kept
