"""Duplicate clusters from verified pairs, without chaining.

Connected components of the verified-pair graph chain boilerplate-heavy documents (man pages, license headers)
into large clusters of documents that are not near-duplicates of each other. So a component only proposes: its
keeper is the member that comes first in the stable document order, and a member is removed only when it is itself a
near-duplicate of the keeper (similarity >= threshold, exact when shingles are given). Members that are not stay,
and form clusters of their own among themselves in the next round.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from moss_data.text.shingles import jaccard


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Decision:
    """Per document: its cluster (id = index of the keeper), the cluster's size, and for a removed document the
    keeper it duplicates and their similarity."""

    cluster: int
    cluster_size: int
    duplicate_of: int | None = None
    similarity: float | None = None


def resolve_clusters(
    n: int,
    pairs: dict[tuple[int, int], float],
    threshold: float,
    shingles: list[np.ndarray] | None = None,
    signatures: np.ndarray | None = None,
) -> list[Decision]:
    def signature_sim(i: int, j: int) -> float:
        return float(np.mean(signatures[i] == signatures[j])) if signatures is not None else 0.0

    decisions = [Decision(cluster=i, cluster_size=1) for i in range(n)]
    pending = dict(pairs)
    while pending:
        uf = UnionFind(n)
        for i, j in pending:
            uf.union(i, j)
        members_of: dict[int, set[int]] = defaultdict(set)
        for i, j in pending:
            members_of[uf.find(i)].update((i, j))
        leftovers: dict[tuple[int, int], float] = {}
        for members in members_of.values():
            keeper = min(members)
            removed = []
            for m in sorted(members - {keeper}):
                sim = pending.get((keeper, m))
                if sim is None:
                    sim = jaccard(shingles[keeper], shingles[m]) if shingles is not None else signature_sim(keeper, m)
                if sim >= threshold:
                    removed.append((m, sim))
            size = 1 + len(removed)
            decisions[keeper] = Decision(cluster=keeper, cluster_size=size)
            for m, sim in removed:
                decisions[m] = Decision(cluster=keeper, cluster_size=size, duplicate_of=keeper, similarity=round(sim, 4))
            gone = {keeper} | {m for m, _ in removed}
            # pairs among the members that stayed get another round (they may be duplicates of each other)
            for (i, j), sim in pending.items():
                if i in members and i not in gone and j not in gone:
                    leftovers[(i, j)] = sim
        pending = leftovers
    return decisions
