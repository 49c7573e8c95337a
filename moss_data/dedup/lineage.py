"""Stable document ids, input fingerprints, and the removal list with its lineage check.

A document's ``doc_uid`` is the xxh3-64 of its source name and source id: the same document gets the same uid in
every run. An input *fingerprint* is a hash over the input files' names, sizes and content hashes (the same value as
:func:`moss_data.io.atomic.input_fingerprint` for a local folder; here through datatrove's ``DataFolder``, so inputs
may be fsspec URLs). A removal list records the fingerprint of the input it was computed on, and the table of files
behind it; applying it to anything else raises :class:`LineageError`, as does a uid the input does not contain.

The removal list is compact: one fixed-size binary row per removed document (and per kept document that has removed
near-duplicates, with its cluster size), sorted by (input file, uid) with an offset per file, so a task that applies
it to some input files reads only their rows (positioned reads, local or remote).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import orjson
import xxhash
from datatrove.io import DataFolder, get_datafolder

from moss_data.io.atomic import fingerprint_records, stream_sha256
from moss_data.io.documents import SHARD_PATTERN


class LineageError(RuntimeError):
    """A removal list does not belong to the input it is being applied to."""


def doc_uid(source: str, doc_id: str) -> str:
    return xxhash.xxh3_64_hexdigest(f"{source}\0{doc_id}")


def uid_int(uid: str) -> int:
    return int(uid, 16)


def uid_hex(uid: int) -> str:
    return f"{int(uid):016x}"  # xxh3_64_hexdigest's spelling: 16 digits, so string and integer order agree


# ------------------------------------------------------------------ input files and fingerprints


def input_files(folder: DataFolder) -> list[tuple[str, int]]:
    """(name, size) of a document folder's shards (``<route>/*.jsonl.gz``), in the order datatrove's readers list
    and shard them (task r reads files r, r + tasks, ...)."""
    found = folder.glob(SHARD_PATTERN, detail=True)
    return sorted((name, int(info["size"])) for name, info in found.items() if info["type"] != "directory")


def file_sha256(folder: DataFolder, name: str) -> str:
    with folder.open(name, "rb") as f:
        return stream_sha256(f)



def folder_fingerprint(folder: DataFolder | str) -> str:
    folder = get_datafolder(folder)
    return fingerprint_records([{"name": n, "size": s, "sha256": file_sha256(folder, n)} for n, s in input_files(folder)])


# ------------------------------------------------------------------ the removal list

REASONS = ("kept", "exact_duplicate", "url_duplicate", "near_duplicate", "contaminated")
KEPT, EXACT, URL, NEAR, CONTAMINATED = range(len(REASONS))  # edge kinds use EXACT..NEAR: lower wins
NO_FILE = -1

ROW = np.dtype([
    ("uid", "<u8"), ("file", "<i4"), ("route", "u1"), ("reason", "u1"),
    ("duplicate_of", "<u8"), ("similarity", "<f4"), ("cluster_size", "<u4"),
])
ROWS_FILE, META_FILE = "rows.bin", "meta.json"


@dataclass
class RemovalList:
    """Documents to remove from one exact input, with why; and per kept document that has removed near-duplicates,
    its cluster size. ``rows``: :data:`ROW` records sorted by (file, uid); ``files``: the input's file table
    (name, size, sha256) the fingerprint was computed from; ``routes``: names of the route codes."""

    input_fingerprint: str
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, ROW))
    files: list[dict] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.rows = np.sort(np.asarray(self.rows, dtype=ROW), order=["file", "uid"])

    @classmethod
    def from_entries(cls, input_fingerprint: str, entries: dict[str, dict],
                     files: list[dict] | None = None) -> RemovalList:
        """From ``uid -> {"reason", "duplicate_of", "similarity", "route", "file"}`` (small lists: tests, tools)."""
        routes = sorted({e.get("route", "") for e in entries.values()})
        names = [f["name"] for f in files or []]
        rows = np.zeros(len(entries), ROW)
        for row, (uid, e) in zip(rows, entries.items()):
            row["uid"] = uid_int(uid)
            row["file"] = names.index(e["file"]) if e.get("file") in names else NO_FILE
            row["route"] = routes.index(e.get("route", ""))
            row["reason"] = REASONS.index(e["reason"])
            row["duplicate_of"] = uid_int(e["duplicate_of"]) if e.get("duplicate_of") else 0
            row["similarity"] = np.nan if e.get("similarity") is None else e["similarity"]
        return cls(input_fingerprint, rows, list(files or []), routes)

    @property
    def removed(self) -> np.ndarray:
        return self.rows[self.rows["reason"] != KEPT]

    @property
    def entries(self) -> dict[str, dict]:
        """The removals as ``uid -> {"reason", "duplicate_of", "similarity", "route"}`` (for small lists)."""
        return {uid_hex(r["uid"]): entry(r, self.routes) for r in self.removed}

    def file_offsets(self) -> np.ndarray:
        """Row range of each file: rows of file i are ``rows[offsets[i]:offsets[i + 1]]``; unattributed rows (no
        file) come before ``offsets[0]``."""
        return np.searchsorted(self.rows["file"], np.arange(len(self.files) + 1), side="left")

    def save(self, folder: DataFolder | str) -> None:
        """``rows.bin`` then ``meta.json`` (written last: a list without it is incomplete)."""
        folder = get_datafolder(folder)
        with folder.open(ROWS_FILE, "wb") as f:
            f.write(self.rows.tobytes())
        meta = {"input_fingerprint": self.input_fingerprint, "files": self.files, "routes": self.routes,
                "reasons": list(REASONS), "rows": len(self.rows), "file_offsets": self.file_offsets().tolist()}
        with folder.open(META_FILE, "wb") as f:
            f.write(orjson.dumps(meta))

    @staticmethod
    def load_meta(folder: DataFolder | str) -> dict:
        folder = get_datafolder(folder)
        if not folder.isfile(META_FILE):
            raise FileNotFoundError(f"no removal list in {folder.path} (run the dedup clusters job first)")
        with folder.open(META_FILE, "rb") as f:
            return orjson.loads(f.read())

    @classmethod
    def load(cls, folder: DataFolder | str, files: list[int] | None = None) -> RemovalList:
        """The whole list, or only the rows of the given input files (by index in the file table) and the rows
        attributed to no file."""
        folder = get_datafolder(folder)
        meta = cls.load_meta(folder)
        offsets = meta["file_offsets"]
        if files is None:
            spans = [(0, meta["rows"])]
        else:
            spans = [(0, offsets[0])] + [(offsets[i], offsets[i + 1]) for i in sorted(files)]
        rows = read_spans(folder, ROWS_FILE, ROW, spans)
        return cls(meta["input_fingerprint"], rows, meta["files"], meta["routes"])

    def check_applies_to(self, fingerprint: str) -> None:
        if fingerprint != self.input_fingerprint:
            raise LineageError(
                f"removal list was computed on input {self.input_fingerprint[:12]} but this input is "
                f"{fingerprint[:12]}: the input changed since; recompute the removals (rerun the dedup stage)"
            )


def entry(row: np.void, routes: list[str]) -> dict:
    """One removal as the metadata the removed document gets."""
    reason = int(row["reason"])
    sim = float(row["similarity"])
    return {
        "reason": REASONS[reason],
        "duplicate_of": uid_hex(row["duplicate_of"]) if reason in (EXACT, URL, NEAR) else None,
        "similarity": None if np.isnan(sim) else round(sim, 4),
        "route": routes[int(row["route"])] if int(row["route"]) < len(routes) else None,
    }


def read_spans(folder: DataFolder, name: str, dtype: np.dtype, spans: list[tuple[int, int]]) -> np.ndarray:
    """Records ``[start, stop)`` of each span of a binary file of ``dtype`` records, by positioned reads (local or
    remote alike; no memory map, whose touched pages would count as the task's memory)."""
    dtype = np.dtype(dtype)
    spans = [(a, b) for a, b in spans if b > a]
    if not spans:
        return np.zeros(0, dtype)
    view = np.empty(sum(b - a for a, b in spans) * dtype.itemsize, dtype=np.uint8)
    pos = 0
    with folder.open(name, "rb") as f:
        for a, b in spans:
            f.seek(a * dtype.itemsize)
            size = (b - a) * dtype.itemsize
            data = f.read(size)
            if len(data) != size:
                raise EOFError(f"{folder.path}/{name}: records {a}..{b} beyond the end of the file")
            view[pos : pos + size] = np.frombuffer(data, dtype=np.uint8)
            pos += size
    return np.frombuffer(view, dtype=dtype)  # (records,) or, for a sub-array dtype, (records, length)
