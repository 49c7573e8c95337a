"""Job 4 of the dedup plan (``tasks`` tasks, the signatures job's file split): the removal list applied to the input.

Before its first document each task checks lineage: the fingerprint of the input as it is now (names and sizes of
every file, content hashes of its own files, the recorded hashes of the others: every file is hashed by the one task
that reads it) must be the one the removal list was computed on, and every row of the list must name an input file.
After its last document it checks that every row of its files named a document it read. A failed check raises
:class:`~moss_data.dedup.lineage.LineageError` ("recompute the removals"). The documents go on, with their outcome in
``metadata[OUTCOME_KEY]``, to the one JsonlWriter of the job, which files them by outcome and route.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep

from moss_data.io.atomic import fingerprint_records
from moss_data.dedup.lineage import (KEPT, NO_FILE, LineageError, RemovalList, doc_uid, entry, file_sha256,
                                     input_files, uid_hex, uid_int)
from moss_data.dedup.reader import FILE_KEY
from moss_data.dedup.workfiles import apply_file, write_json

OUTCOME_KEY = "dedup_outcome"  # the writer's output_filename files documents by it


class ApplyRemovals(PipelineStep):
    """Sets on every document ``doc_uid``; on kept ones ``dup_cluster`` (its own uid) and ``dup_cluster_size``; on
    removed ones ``dedup_reason``, ``duplicate_of`` and ``similarity``; and ``OUTCOME_KEY`` = ``kept`` or
    ``removed`` (the stage's folder names). Writes its counts by route and outcome to the work folder."""

    name = "✂️ dedup apply"
    type = "🫂 - DEDUP"

    def __init__(self, input_dir: str, removals_dir: str, work_dir: str, kept: str, removed: str):
        super().__init__()
        self.input_dir = input_dir
        self.removals_dir = removals_dir
        self.work_dir = work_dir
        self.kept = kept
        self.removed = removed

    def check_lineage(self, rank: int, world_size: int) -> tuple[RemovalList, set[str]]:
        """The removal list's rows of this task's files, and its files; raises LineageError."""
        source = get_datafolder(self.input_dir)
        meta = RemovalList.load_meta(self.removals_dir)
        listing = input_files(source)
        mine = {name for name, _ in listing[rank::world_size]}
        recorded = {f["name"]: f for f in meta["files"]}
        records = []
        for name, size in listing:
            known = recorded.get(name)
            sha = known["sha256"] if known and known["size"] == size and name not in mine else file_sha256(source, name)
            records.append({"name": name, "size": size, "sha256": sha})
        removals = RemovalList(meta["input_fingerprint"], files=meta["files"], routes=meta["routes"])
        removals.check_applies_to(fingerprint_records(records))
        unattributed = meta["file_offsets"][0] if meta["file_offsets"] else meta["rows"]
        if unattributed or [f["name"] for f in meta["files"]] != [name for name, _ in listing]:
            raise LineageError(f"{unattributed or 'some'} removal(s) name documents not in this input: recompute "
                               f"the removals (rerun the dedup stage)")
        mine_index = [i for i, f in enumerate(meta["files"]) if f["name"] in mine]
        return RemovalList.load(self.removals_dir, files=mine_index), mine

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        removals, mine = self.check_lineage(rank, world_size)
        rows = removals.rows
        names = [f["name"] for f in removals.files]
        offsets = removals.file_offsets()
        span = {name: (int(offsets[i]), int(offsets[i + 1])) for i, name in enumerate(names) if name in mine}
        row_uids = rows["uid"].copy()
        seen = np.zeros(len(rows), dtype=bool)
        counts: Counter = Counter()
        documents = 0
        for doc in data or ():
            with self.track_time():
                meta = doc.metadata
                lo, hi = span.get(meta.pop(FILE_KEY), (0, 0))
                uid = doc_uid(meta.get("source", ""), doc.id)
                meta["doc_uid"] = uid
                key = uid_int(uid)
                k = lo + int(np.searchsorted(row_uids[lo:hi], key))
                row = rows[k] if k < hi and row_uids[k] == key else None
                if row is not None:
                    seen[k] = True
                if row is not None and row["reason"] != KEPT:
                    e = entry(row, removals.routes)
                    meta.update(dedup_reason=e["reason"], duplicate_of=e["duplicate_of"], similarity=e["similarity"])
                    meta[OUTCOME_KEY] = self.removed
                    outcome = e["reason"]
                else:
                    meta.update(dup_cluster=uid, dup_cluster_size=int(row["cluster_size"]) if row is not None else 1)
                    meta[OUTCOME_KEY] = self.kept
                    outcome = "kept"
                counts[(meta.get("route"), outcome)] += 1
                documents += 1
                self.stat_update(f"{outcome}", f"{meta.get('route')}_{outcome}")
            yield doc
        missing = np.flatnonzero(~seen & (rows["file"] != NO_FILE))
        if len(missing):
            raise LineageError(f"{len(missing)} removal(s) name documents not in this input, e.g. "
                               f"{[uid_hex(u) for u in rows['uid'][missing[:3]]]}: recompute the removals")
        write_json(get_datafolder(self.work_dir), apply_file(rank), {
            "documents": documents,
            "counts": [{"route": r, "outcome": o, "documents": n} for (r, o), n in sorted(counts.items())],
        })
