"""Job 2 of the dedup plan (``tasks`` tasks, one per key partition): buckets of equal keys -> candidate pairs ->
verified edges.

Task ``p`` reads partition ``p`` of every signature task. Its memory: 8 bytes per bucket key of the partition (to
find the keys that occur twice, by an in-place sort), then only the records of those keys and their documents'
rows, shingle sets and signatures."""

from __future__ import annotations

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep

from moss_data.dedup.config import DedupConfig
from moss_data.dedup.keys import scope_of
from moss_data.dedup.lineage import EXACT, NEAR, REASONS, URL
from moss_data.dedup.minhash import bucket_pairs, key_kind, shingle_similarity
from moss_data.dedup.workfiles import (BAND, DOC, EDGE, SHINGLE, SIGNATURE, RecordRanges, RecordWriter, band_file,
                                       edge_file, read_chunks, read_json, read_rows, record_count, signature_file,
                                       split_ref, write_json)


def read_signature_metas(work, signature_tasks: int) -> list[dict]:
    return [read_json(work, signature_file(r, "json")) for r in range(signature_tasks)]


def route_table(metas: list[dict]) -> tuple[list[str], list[np.ndarray]]:
    """All routes (sorted: their codes order documents as the route names do) and per signature task the map from
    its own route codes to these."""
    routes = sorted({r for m in metas for r in m["routes"]})
    return routes, [np.array([routes.index(r) for r in m["routes"]] or [0], dtype=np.uint8) for m in metas]


_NO_HASH = np.zeros(1, "V16")[0]


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


class FindDuplicatePairs(PipelineStep):
    """Groups equal bucket keys of its partition (a numpy sort), pairs each bucket's members (a bucket over
    ``max_bucket`` pairs each member with its first only), and verifies the pairs: exact-text and URL keys are
    checked on the full 128-bit hashes (similarity 1 and none), LSH pairs on exact shingle Jaccard (shingle sets
    read from the signature tasks' files, size filter first) or on the signature estimate, against ``threshold``.
    Token-less documents are never near-duplicates. Writes the verified edges (uids, input files, routes, kind,
    similarity)."""

    name = "🪣 dedup candidates"
    type = "🫂 - DEDUP"

    def __init__(self, work_dir: str, cfg: DedupConfig, signature_tasks: int):
        super().__init__()
        self.work_dir = work_dir
        self.cfg = cfg
        self.signature_tasks = signature_tasks

    def bucketed_records(self, work, partition: int) -> np.ndarray:
        """The band records of keys that occur at least twice in this partition."""
        names = [band_file(partition, r) for r in range(self.signature_tasks)]
        keys = np.empty(sum(record_count(work, n, BAND) for n in names), dtype=np.uint64)
        pos = 0
        for name in names:
            for chunk in read_chunks(work, name, BAND):
                keys[pos : pos + len(chunk)] = chunk["key"]
                pos += len(chunk)
        self.stat_update("bucket_keys", value=len(keys), unit="partition")
        keys.sort()
        repeated = np.unique(keys[1:][keys[1:] == keys[:-1]])
        del keys
        parts = [np.zeros(0, BAND)]
        for name in names:
            for chunk in read_chunks(work, name, BAND):
                parts.append(chunk[_member(chunk["key"], repeated)])
        return np.concatenate(parts)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        cfg = self.cfg
        work = get_datafolder(self.work_dir)
        metas = read_signature_metas(work, self.signature_tasks)
        routes, route_maps = route_table(metas)
        with self.track_time(unit="partition"):
            records = self.bucketed_records(work, rank)
            # the documents in buckets: their rows from the signature tasks' tables
            refs, member = np.unique(records["ref"], return_inverse=True)
            task, index = split_ref(refs)
            docs = np.zeros(len(refs), DOC)
            for r in np.unique(task).tolist():
                sel = task == r
                docs[sel] = read_rows(work, signature_file(r, "docs.bin"), DOC, index[sel])
                docs["route"][sel] = route_maps[r][docs["route"][sel]]
            scope_ids = {s: i for i, s in enumerate(sorted({scope_of(r, cfg.scope) for r in routes}))}
            scope = np.array([scope_ids[scope_of(r, cfg.scope)] for r in routes] or [0])[docs["route"]]
            # buckets in key order, members in the stable document order (route, uid)
            order = np.lexsort((docs["uid"][member], docs["route"][member], records["key"]))
            keys, member = records["key"][order], member[order]
            a, b, kind = self.distinct_pairs(keys, member, scope)
            self.stat_update("candidate_pairs", value=len(a), unit="partition")
            sim = np.full(len(a), np.nan, dtype=np.float32)
            verified = np.zeros(len(a), dtype=bool)
            exact, url = kind == EXACT, kind == URL
            verified[exact] = docs["text_hash"][a[exact]] == docs["text_hash"][b[exact]]
            sim[exact] = 1.0
            url_a = docs["url_hash"][a[url]]
            verified[url] = (url_a == docs["url_hash"][b[url]]) & (url_a != _NO_HASH)
            # near pairs: only those not already exact or URL duplicates, never a token-less document
            pair = a * len(docs) + b
            near = (kind == NEAR) & (docs["shingles_count"][a] > 0) & (docs["shingles_count"][b] > 0)
            near = np.flatnonzero(near & ~np.isin(pair, pair[verified]))
            self.stat_update("near_candidates", value=len(near), unit="partition")
            if len(near):
                sims = self.verify_near(work, metas, docs, task, index, a[near], b[near])
                good = ~np.isnan(sims)
                verified[near[good]] = True
                sim[near[good]] = sims[good]
            # one edge per pair: the strongest kind (exact > url > near)
            keep = np.flatnonzero(verified)
            keep = keep[np.lexsort((kind[keep], b[keep], a[keep]))]
            first = np.ones(len(keep), dtype=bool)
            first[1:] = (a[keep][1:] != a[keep][:-1]) | (b[keep][1:] != b[keep][:-1])
            keep = keep[first]
            edges = np.zeros(len(keep), EDGE)
            ea, eb = a[keep], b[keep]
            edges["a"], edges["b"] = docs["uid"][ea], docs["uid"][eb]
            edges["file_a"], edges["file_b"] = docs["file"][ea], docs["file"][eb]
            edges["route_a"], edges["route_b"] = docs["route"][ea], docs["route"][eb]
            edges["kind"], edges["similarity"] = kind[keep], sim[keep]
        out = RecordWriter(work, edge_file(rank), EDGE)
        out.add(edges)
        out.close()
        counts = {REASONS[k]: int(np.sum(edges["kind"] == k)) for k in (EXACT, URL, NEAR)}
        for k, v in counts.items():
            self.stat_update(f"edges_{k}", value=v, unit="partition")
        write_json(work, edge_file(rank, "json"), {"routes": routes, "edges": len(edges), "by_kind": counts})
        return None

    def distinct_pairs(self, keys: np.ndarray, member: np.ndarray, scope: np.ndarray,
                       chunk_pairs: int = 1 << 17) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct (a, b, kind) pairs of the buckets (runs of equal ``keys``; ``member``: their documents in
        the stable order), made a slice of buckets at a time so that memory follows the distinct pairs, not the
        pairs' repetitions over bands."""
        n = np.int64(max(len(scope), 1))
        if len(keys) == 0:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0, np.uint8)
        starts = np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1])
        sizes = np.diff(np.concatenate([starts, [len(keys)]]))
        pairs = np.where(sizes > self.cfg.max_bucket, sizes - 1, sizes * (sizes - 1) // 2)
        cut = np.searchsorted(np.cumsum(pairs), np.arange(chunk_pairs, max(int(pairs.sum()), 1), chunk_pairs))
        bounds = np.concatenate([[0], starts[np.minimum(cut, len(starts) - 1)], [len(keys)]])
        bounds = np.unique(bounds.astype(np.int64))
        found, held, repeated = [np.zeros(0, np.int64)], 0, 0
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            i, j = bucket_pairs(keys[lo:hi], self.cfg.max_bucket)
            a, b, kind = member[lo + i], member[lo + j], key_kind(keys[lo + i]).astype(np.int64)
            ok = (a != b) & (scope[a] == scope[b])
            repeated += len(a)
            found.append(np.unique((a[ok] * n + b[ok]) * 4 + kind[ok]))  # one int64 per (a, b, kind)
            held += len(found[-1])
            if held > 2 * chunk_pairs:
                found = [np.unique(np.concatenate(found))]
                held = len(found[0])
        codes = np.unique(np.concatenate(found))
        self.stat_update("bucket_pairs", value=repeated, unit="partition")
        pair, kind = codes // 4, (codes % 4).astype(np.uint8)
        return pair // n, pair % n, kind

    def verify_near(self, work, metas, docs, task, index, a, b, block_pairs: int = 1 << 14) -> np.ndarray:
        """Similarity of each pair (a[k], b[k]) of bucketed documents, NaN when under the threshold."""
        cfg = self.cfg
        out = np.full(len(a), np.nan, dtype=np.float32)
        if cfg.verify == "signature":
            needed = np.unique(np.concatenate([a, b]))
            num_perm = metas[0]["num_perm"]
            sigs = np.zeros((len(needed), num_perm), dtype=SIGNATURE)  # the signatures of pair members only
            for r in np.unique(task[needed]).tolist():
                sel = task[needed] == r
                sigs[sel] = read_rows(work, signature_file(r, "sig.bin"), np.dtype((SIGNATURE, num_perm)),
                                      index[needed[sel]])
            pa, pb = np.searchsorted(needed, a), np.searchsorted(needed, b)
            for start in range(0, len(a), 4096):  # the estimate, vectorized in blocks
                est = (sigs[pa[start : start + 4096]] == sigs[pb[start : start + 4096]]).mean(axis=1)
                out[start : start + 4096] = np.where(est >= cfg.threshold, est, np.nan)
            return out
        start, count = docs["shingles_start"], docs["shingles_count"]
        size_a, size_b = count[a].astype(np.int64), count[b].astype(np.int64)
        todo = np.flatnonzero(np.minimum(size_a, size_b) >= cfg.threshold * np.maximum(size_a, size_b))  # size filter
        stores = {r: RecordRanges(work, signature_file(r, "shingles.bin"), SHINGLE)
                  for r in np.unique(task[np.concatenate([a[todo], b[todo]])]).tolist()}
        try:
            # a block of pairs at a time: on remote storage only the block's shingle sets are fetched and held
            for block in range(0, len(todo), block_pairs):
                ks = todo[block : block + block_pairs]
                needed = np.unique(np.concatenate([a[ks], b[ks]]))
                for r, store in stores.items():
                    sel = needed[task[needed] == r]
                    store.prefetch(start[sel], count[sel])
                for k, x, y in zip(ks.tolist(), a[ks].tolist(), b[ks].tolist()):
                    sx = stores[int(task[x])].get(int(start[x]), int(count[x]))
                    sy = stores[int(task[y])].get(int(start[y]), int(count[y]))
                    sim = shingle_similarity(sx, sy, cfg.threshold)
                    if sim is not None:
                        out[k] = sim
                for store in stores.values():
                    store.release()
        finally:
            for store in stores.values():
                store.close()
        return out
