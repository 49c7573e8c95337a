"""Job 3 of the dedup plan (one task): decisions from the verified edges, without chaining.

Connected components of the duplicate graph chain boilerplate-heavy documents (man pages, license headers) into
large clusters of documents that are not duplicates of each other. So nothing is removed for being in a component:
the members of each component are taken in the stable order (route, doc_uid); contaminated documents go first; a
member is then removed if it has an edge to an already *kept* member (reason by the edge's kind, exact > URL > near;
``duplicate_of`` that kept member, the most similar one), and kept otherwise. A document goes only if it is itself a
duplicate of a kept document, ``duplicate_of`` always names a kept document, and a pair neither of whose members
is the component's first is still resolved.

A member's decision depends only on the members before it, so taking every document of every component in one
pass in the global stable order gives the same decisions as taking component by component: :func:`decide` is one
sort of the edges and one pass over them (cost linear in edges after the sort; memory proportional to the
documents that have an edge or are contaminated, never to the corpus).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep

from moss_data.dedup.candidates import read_signature_metas, route_table
from moss_data.dedup.config import DedupConfig
from moss_data.io.atomic import fingerprint_records
from moss_data.dedup.lineage import CONTAMINATED, KEPT, NEAR, REASONS, ROW, RemovalList
from moss_data.dedup.workfiles import CONTAMINATED_DOC, EDGE, edge_file, read_all, read_json, signature_file


@dataclass
class Decisions:
    """Per document (in the stable order): reason (``KEPT`` or a removal reason code of :data:`REASONS`), the kept
    document it duplicates (-1 if none), the similarity, and for kept documents the cluster size (1 + documents
    removed as its near-duplicates)."""

    reason: np.ndarray
    duplicate_of: np.ndarray
    similarity: np.ndarray
    cluster_size: np.ndarray

    @property
    def kept(self) -> np.ndarray:
        return self.reason == KEPT


def decide(n: int, a: np.ndarray, b: np.ndarray, kind: np.ndarray, similarity: np.ndarray,
           contaminated: np.ndarray | None = None) -> Decisions:
    """Decisions for documents ``0..n-1`` (numbered in the stable order) from edges ``(a[k], b[k])`` of ``kind[k]``
    (EXACT, URL or NEAR) and ``similarity[k]`` (NaN: none, for URL edges)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    a, b = np.minimum(a, b), np.maximum(a, b)
    kind = np.asarray(kind, dtype=np.uint8)
    similarity = np.asarray(similarity, dtype=np.float32)
    reason = np.full(n, KEPT, dtype=np.uint8)
    if contaminated is not None:
        reason[np.asarray(contaminated, dtype=bool)] = CONTAMINATED
    duplicate_of = np.full(n, -1, dtype=np.int64)
    sim_out = np.full(n, np.nan, dtype=np.float32)
    # each document's edges to earlier documents, best first: kind, then similarity, then the earlier document
    order = np.lexsort((a, -np.nan_to_num(similarity, nan=-1.0), kind, b))
    kept = bytearray((reason == KEPT).astype(np.uint8).tobytes())
    removed_doc, removed_by = [], []  # a removed document, the edge that removes it
    current, settled = -1, True
    for block in range(0, len(order), 1 << 16):  # Python lists a block at a time
        edges = order[block : block + (1 << 16)]
        for e, u, v in zip(edges.tolist(), a[edges].tolist(), b[edges].tolist()):
            if v != current:
                current, settled = v, not kept[v]  # a contaminated document is already settled
            if settled or not kept[u]:
                continue
            kept[v] = 0
            removed_doc.append(v)
            removed_by.append(e)
            settled = True
    if removed_doc:
        docs = np.array(removed_doc, dtype=np.int64)
        edges = np.array(removed_by, dtype=np.int64)
        reason[docs] = kind[edges]
        duplicate_of[docs] = a[edges]
        sim_out[docs] = similarity[edges]
    near = reason == NEAR
    cluster_size = np.where(reason == KEPT, 1 + np.bincount(duplicate_of[near], minlength=n)[:n], 0).astype(np.int64)
    return Decisions(reason, duplicate_of, sim_out, cluster_size)


def distinct_edges(edges: np.ndarray) -> np.ndarray:
    """One edge per pair, the strongest (exact > URL > near, then the most similar): a pair found in several key
    partitions (LSH bands, its exact-text key, its URL key) comes once per partition. Only a pair's strongest edge
    can decide anything."""
    if len(edges) < 2:
        return edges
    edges = edges[np.lexsort((-np.nan_to_num(edges["similarity"], nan=-1.0), edges["kind"], edges["b"], edges["a"]))]
    first = np.ones(len(edges), dtype=bool)
    first[1:] = (edges["a"][1:] != edges["a"][:-1]) | (edges["b"][1:] != edges["b"][:-1])
    return edges[first]


class ResolveClusters(PipelineStep):
    """Reads every candidates task's edges and the contaminated documents, decides (:func:`decide`), removes the
    stage's previous outputs (``clear``: they belong to another removal list) and writes the removal list with the
    input's fingerprint and file table."""

    name = "🧮 dedup clusters"
    type = "🫂 - DEDUP"

    def __init__(self, work_dir: str, output_dir: str, removals_dir: str, cfg: DedupConfig, signature_tasks: int,
                 candidate_tasks: int, clear: list[str]):
        super().__init__()
        self.work_dir = work_dir
        self.output_dir = output_dir
        self.removals_dir = removals_dir
        self.cfg = cfg
        self.signature_tasks = signature_tasks
        self.candidate_tasks = candidate_tasks
        self.clear = list(clear)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        work, out = get_datafolder(self.work_dir), get_datafolder(self.output_dir)
        metas = read_signature_metas(work, self.signature_tasks)
        routes, route_maps = route_table(metas)
        files = sorted((f for m in metas for f in m["files"]), key=lambda f: f["index"])
        if [f["index"] for f in files] != list(range(len(files))):
            raise RuntimeError("dedup: the signature tasks did not read the whole input (rerun the signatures job)")
        files = [{"name": f["name"], "size": f["size"], "sha256": f["sha256"]} for f in files]
        with self.track_time(unit="job"):
            parts, held, distinct, read = [np.zeros(0, EDGE)], 0, 0, 0
            for p in range(self.candidate_tasks):
                if read_json(work, edge_file(p, "json"))["routes"] != routes:
                    raise RuntimeError("dedup: edges and signatures disagree on the routes (rerun the candidates job)")
                parts.append(read_all(work, edge_file(p), EDGE))
                read += len(parts[-1])
                held += len(parts[-1])
                if held > max(2 * distinct, 1 << 20):  # compact now and then: memory follows the distinct edges
                    parts = [distinct_edges(np.concatenate(parts))]
                    held = distinct = len(parts[0])
            edges = distinct_edges(np.concatenate(parts))
            bad = [np.zeros(0, CONTAMINATED_DOC)]
            for r in range(self.signature_tasks):
                c = read_all(work, signature_file(r, "contaminated.bin"), CONTAMINATED_DOC).copy()
                c["route"] = route_maps[r][c["route"]]
                bad.append(c)
            bad = np.concatenate(bad)
            # the documents that take part, numbered in the stable order (route, uid)
            uid = np.concatenate([edges["a"], edges["b"], bad["uid"]])
            route = np.concatenate([edges["route_a"], edges["route_b"], bad["route"]])
            file = np.concatenate([edges["file_a"], edges["file_b"], bad["file"]])
            uids, first = np.unique(uid, return_index=True)
            stable = np.lexsort((uids, route[first]))
            rank_of = np.empty(len(uids), dtype=np.int64)
            rank_of[stable] = np.arange(len(uids))

            def node(u: np.ndarray) -> np.ndarray:
                return rank_of[np.searchsorted(uids, u)]

            contaminated = np.zeros(len(uids), dtype=bool)
            contaminated[node(bad["uid"])] = True
            decisions = decide(len(uids), node(edges["a"]), node(edges["b"]), edges["kind"], edges["similarity"],
                               contaminated)
            overlap = np.zeros(len(uids), dtype=np.float32)
            overlap[node(bad["uid"])] = bad["count"]
            # rows: every removed document, and kept documents with removed near-duplicates
            take = np.flatnonzero((decisions.reason != KEPT) | (decisions.cluster_size > 1))
            ordered_uid = uids[stable]
            rows = np.zeros(len(take), ROW)
            rows["uid"] = ordered_uid[take]
            rows["file"] = file[first][stable][take]
            rows["route"] = route[first][stable][take]
            rows["reason"] = decisions.reason[take]
            dup = decisions.duplicate_of[take]
            rows["duplicate_of"] = np.where(dup >= 0, ordered_uid[np.maximum(dup, 0)], 0)
            rows["similarity"] = np.where(decisions.reason[take] == CONTAMINATED, overlap[take],
                                          decisions.similarity[take])
            rows["cluster_size"] = decisions.cluster_size[take]
        for name in self.clear:  # the manifest first: a stage interrupted from here on is not done
            if out.exists(name):
                out.rm(name, recursive=True)
        RemovalList(fingerprint_records(files), rows, files, routes).save(self.removals_dir)
        self.stat_update("edges_read", value=read, unit="job")
        self.stat_update("edges", value=len(edges), unit="job")
        self.stat_update("documents_with_edges", value=len(uids), unit="job")
        for code, label in enumerate(REASONS):
            count = int(np.sum(rows["reason"] == code))
            if code != KEPT:
                self.stat_update(f"removed_{label}", value=count, unit="job")
        self.stat_update("kept_with_near_duplicates", value=int(np.sum(rows["reason"] == KEPT)), unit="job")
        return None
