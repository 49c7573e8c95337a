"""Job 1 of the dedup plan (``tasks`` tasks): per document its keys, shingles and MinHash signature, and the bucket keys
that find its duplicates, written to work files as the documents stream by (memory does not grow with the input)."""

from __future__ import annotations

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep

from moss_data.dedup.config import DedupConfig
from moss_data.dedup.keys import eval_ngrams, ngram_hashes, normalized_text_hash, scope_of, url_hash
from moss_data.dedup.lineage import EXACT, URL, doc_uid, file_sha256, input_files, uid_int
from moss_data.dedup.minhash import band_keys, hash_key
from moss_data.dedup.reader import FILE_KEY
from moss_data.dedup.workfiles import (BAND, CONTAMINATED_DOC, DOC, SHINGLE, SIGNATURE, RecordWriter, band_file,
                                       make_ref, signature_file, write_json)
from moss_data.text.minhash import LSHParams, MinHasher
from moss_data.text.shingles import shingle_hashes


def lsh_params(cfg: DedupConfig) -> LSHParams:
    return LSHParams(bands=cfg.bands, rows=cfg.rows, seed=cfg.seed)


class BandWriter:
    """Bucket keys and document refs, buffered and written to partition ``key % partitions`` of this task."""

    def __init__(self, folder, rank: int, partitions: int, flush_records: int = 1 << 16):
        self.partitions = partitions
        self.files = [RecordWriter(folder, band_file(p, rank), BAND, flush_records=0) for p in range(partitions)]
        self.keys: list[np.ndarray] = []
        self.refs: list[np.ndarray] = []
        self.buffered = 0
        self.flush_records = flush_records
        self.written = 0

    def add(self, keys: np.ndarray, ref: np.uint64) -> None:
        self.keys.append(keys)
        self.refs.append(np.full(len(keys), ref, dtype=np.uint64))
        self.buffered += len(keys)
        if self.buffered >= self.flush_records:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        records = np.empty(self.buffered, BAND)
        records["key"] = np.concatenate(self.keys)
        records["ref"] = np.concatenate(self.refs)
        part = records["key"] % np.uint64(self.partitions)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.partitions + 1))
        for p, f in enumerate(self.files):
            f.add(records[order[bounds[p] : bounds[p + 1]]])  # flush_records=0: written at once
        self.written += self.buffered
        self.keys, self.refs, self.buffered = [], [], 0

    def close(self) -> None:
        self.flush()
        for f in self.files:
            f.close()


class ComputeSignatures(PipelineStep):
    """Reads its share of the input (after a :class:`~moss_data.dedup.reader.ShardReader`) and writes, per task:
    a :data:`DOC` row per document, the shingle sets (``verify: exact``) or signatures (``verify: signature``),
    the contaminated documents, and bucket keys partitioned over the candidates job's ``partitions`` tasks. Token-less
    documents (no shingle) get no LSH keys: they are never near-duplicates, only exact or URL ones."""

    name = "🔏 dedup signatures"
    type = "🫂 - DEDUP"

    def __init__(self, input_dir: str, work_dir: str, cfg: DedupConfig, partitions: int):
        super().__init__()
        self.input_dir = input_dir
        self.work_dir = work_dir
        self.cfg = cfg
        self.partitions = partitions

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        cfg = self.cfg
        source, work = get_datafolder(self.input_dir), get_datafolder(self.work_dir)
        listing = input_files(source)
        index_of = {name: i for i, (name, _) in enumerate(listing)}
        with self.track_time(unit="input_file"):
            files = [{"name": name, "index": index_of[name], "size": size, "sha256": file_sha256(source, name)}
                     for name, size in listing[rank::world_size]]
        params = lsh_params(cfg)
        hasher = MinHasher(params)
        grams = eval_ngrams(cfg.decontaminate) if cfg.decontaminate.eval_sets else None
        keep_shingles = cfg.near and cfg.verify == "exact"
        keep_signatures = cfg.near and cfg.verify == "signature"
        docs = RecordWriter(work, signature_file(rank, "docs.bin"), DOC, flush_records=1 << 12)
        shingle_file = RecordWriter(work, signature_file(rank, "shingles.bin"), SHINGLE, flush_records=1 << 18)
        signature_out = RecordWriter(work, signature_file(rank, "sig.bin"), SIGNATURE, flush_records=1 << 16)
        contaminated = RecordWriter(work, signature_file(rank, "contaminated.bin"), CONTAMINATED_DOC)
        bands = BandWriter(work, rank, self.partitions)
        routes: dict[str, int] = {}
        rows: list[tuple] = []
        shingle_pos = 0
        count = 0
        for index, doc in enumerate(data or ()):
            with self.track_time():
                meta = doc.metadata
                file = index_of[meta.pop(FILE_KEY)]
                route = meta["route"]
                code = routes.setdefault(route, len(routes))
                if code > 255:
                    raise ValueError("dedup: more than 256 routes")
                uid = uid_int(doc_uid(meta.get("source", ""), doc.id))
                scope = scope_of(route, cfg.scope)
                ref = make_ref(rank, index)
                keys = []
                text_hash = normalized_text_hash(doc.text)
                if cfg.exact:
                    keys.append(hash_key(text_hash, EXACT, scope))
                url = url_hash(route, meta.get("url")) if cfg.url else None
                if url is not None:
                    keys.append(hash_key(url, URL, scope))
                    self.stat_update("with_url")
                start, n_shingles = shingle_pos, 0
                if cfg.near:
                    shingles = shingle_hashes(doc.text, route, cfg.shingle_size)
                    n_shingles = len(shingles)
                    if n_shingles:
                        signature = hasher.signature(shingles)
                        if keep_shingles:
                            shingle_file.add(shingles.astype(SHINGLE))
                            shingle_pos += n_shingles
                        if keep_signatures:
                            signature_out.add(signature)
                        keys.extend(band_keys(signature[None, :], params, scope)[0].tolist())
                    else:
                        self.stat_update("token_less")
                    if keep_signatures and not n_shingles:
                        signature_out.add(np.zeros(params.num_perm, SIGNATURE))  # one row per document
                overlap = len(ngram_hashes(doc.text, cfg.decontaminate.ngram) & grams) if grams else 0
                if grams is not None and overlap >= cfg.decontaminate.min_overlap:
                    contaminated.add(np.array([(uid, file, code, overlap)], CONTAMINATED_DOC))
                    self.stat_update("contaminated")
                if keys:
                    bands.add(np.array(keys, dtype=np.uint64), ref)
                rows.append((uid, code, file, overlap, start, n_shingles, text_hash, url or b""))
                if len(rows) >= 1 << 12:
                    docs.add(np.array(rows, DOC))
                    rows = []
                count += 1
                self.stat_update("documents")
                self.stat_update(f"documents_{route}")
        docs.add(np.array(rows, DOC))
        for writer in (docs, shingle_file, signature_out, contaminated, bands):
            writer.close()
        self.stat_update("bucket_keys", value=bands.written)
        write_json(work, signature_file(rank, "json"), {
            "rank": rank, "documents": count, "routes": list(routes), "files": files,
            "partitions": self.partitions, "shingles": keep_shingles, "signatures": keep_signatures,
            "num_perm": params.num_perm,
        })
        return None
