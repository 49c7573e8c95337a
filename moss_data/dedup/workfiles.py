"""The dedup jobs' work files (under ``<output>/work``, through datatrove's ``DataFolder``, so local or fsspec URLs):
fixed-size binary records that later jobs read in ranges (positioned reads, local or remote alike).

- ``signatures/<rank>.docs.bin``: :data:`DOC` per document read by signature task ``rank`` (uid, route code, input
  file, decontamination overlap, where its shingles are, text and URL hashes); ``.shingles.bin``: every document's
  sorted shingle hashes (uint32), concatenated; ``.sig.bin``: MinHash signatures (``verify: signature`` only);
  ``.contaminated.bin``: :data:`CONTAMINATED_DOC` of documents over the eval-set overlap; ``.json`` (last): the
  counts, the task's route names and its input files (name, size, sha256).
- ``bands/<partition>/<rank>.bin``: :data:`BAND` records (bucket key, document ref) of partition ``key % P``:
  LSH bands, plus the exact-text and URL keys, so all three kinds of duplicates come out of one bucket machinery.
- ``edges/<partition>.bin``: :data:`EDGE`, verified duplicate pairs; ``.json``: route names, counts.
- ``apply/<rank>.json``: what apply task ``rank`` wrote, by route and outcome.
"""

from __future__ import annotations

import os

import numpy as np
import orjson
from datatrove.io import DataFolder

from moss_data.dedup.lineage import read_spans

DOC = np.dtype([
    ("uid", "<u8"), ("route", "u1"), ("file", "<i4"), ("contamination", "<u4"),
    ("shingles_start", "<u8"), ("shingles_count", "<u4"), ("text_hash", "V16"), ("url_hash", "V16"),
])
BAND = np.dtype([("key", "<u8"), ("ref", "<u8")])  # ref: signature task << 32 | document index in that task
EDGE = np.dtype([
    ("a", "<u8"), ("b", "<u8"), ("file_a", "<i4"), ("file_b", "<i4"), ("route_a", "u1"), ("route_b", "u1"),
    ("kind", "u1"), ("similarity", "<f4"),
])
CONTAMINATED_DOC = np.dtype([("uid", "<u8"), ("file", "<i4"), ("route", "u1"), ("count", "<u4")])
SHINGLE = np.dtype("<u4")
SIGNATURE = np.dtype("<u4")


def signature_file(rank: int, what: str) -> str:
    return f"signatures/{rank:05d}.{what}"


def band_file(partition: int, rank: int) -> str:
    return f"bands/{partition:05d}/{rank:05d}.bin"


def edge_file(partition: int, what: str = "bin") -> str:
    return f"edges/{partition:05d}.{what}"


def apply_file(rank: int) -> str:
    return f"apply/{rank:05d}.json"


def make_ref(rank: int, index: np.ndarray | int):
    return (np.uint64(rank) << np.uint64(32)) | np.asarray(index, dtype=np.uint64)


def split_ref(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (ref >> np.uint64(32)).astype(np.int64), (ref & np.uint64(0xFFFFFFFF)).astype(np.int64)


def write_json(folder: DataFolder, name: str, obj) -> None:
    with folder.open(name, "wb") as f:
        f.write(orjson.dumps(obj))


def read_json(folder: DataFolder, name: str):
    with folder.open(name, "rb") as f:
        return orjson.loads(f.read())


def record_count(folder: DataFolder, name: str, dtype: np.dtype) -> int:
    return folder.size(name) // dtype.itemsize if folder.isfile(name) else 0


class RecordWriter:
    """Appends arrays of records to one work file, writing whenever ``flush_records`` are buffered (so a task's
    memory does not grow with its input)."""

    def __init__(self, folder: DataFolder, name: str, dtype: np.dtype, flush_records: int = 1 << 16):
        self.file = folder.open(name, "wb")
        self.dtype = np.dtype(dtype)
        self.flush_records = flush_records
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.written = 0

    def add(self, records: np.ndarray) -> None:
        if len(records):
            self.buffer.append(records)
            self.buffered += len(records)
            if self.buffered >= self.flush_records:
                self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.file.write(np.concatenate(self.buffer).astype(self.dtype, copy=False).tobytes())
            self.written += self.buffered
            self.buffer, self.buffered = [], 0

    def close(self) -> None:
        self.flush()
        self.file.close()


def read_all(folder: DataFolder, name: str, dtype: np.dtype) -> np.ndarray:
    return read_spans(folder, name, np.dtype(dtype), [(0, record_count(folder, name, np.dtype(dtype)))])


def read_chunks(folder: DataFolder, name: str, dtype: np.dtype, chunk_records: int = 1 << 16):
    """The records of a work file, a chunk at a time."""
    dtype = np.dtype(dtype)
    if not folder.isfile(name):
        return
    with folder.open(name, "rb") as f:
        while block := f.read(chunk_records * dtype.itemsize):
            yield np.frombuffer(block, dtype=dtype)


def read_rows(folder: DataFolder, name: str, dtype: np.dtype, rows: np.ndarray) -> np.ndarray:
    """Records at ``rows`` (sorted, distinct indices) of a work file: one positioned read per run of nearby rows."""
    dtype = np.dtype(dtype)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros(0, dtype)
    gap = max(1, 65536 // dtype.itemsize)  # read through gaps under 64 KiB rather than seek
    groups = np.split(rows, np.flatnonzero(np.diff(rows) > gap) + 1)
    spans = [(int(g[0]), int(g[-1]) + 1) for g in groups]
    data = read_spans(folder, name, dtype, spans)
    span_offsets = np.cumsum([0] + [b - a for a, b in spans])[:-1]
    shift = np.repeat(span_offsets - np.array([a for a, _ in spans]), [len(g) for g in groups])
    return data[rows + shift]


class RecordRanges:
    """Variable-length record ranges of one work file (a document's shingle set), by positioned reads: ``get`` reads
    one range (local files); on remote storage the ranges given to :meth:`prefetch` are read once, in file order,
    and kept. Nothing is memory-mapped, so a task's resident memory is what it holds, not what it has looked at."""

    def __init__(self, folder: DataFolder, name: str, dtype: np.dtype):
        self.folder, self.name, self.dtype = folder, name, np.dtype(dtype)
        self.local = folder.is_local()
        self.fd = os.open(folder.resolve_paths(name), os.O_RDONLY) if self.local else None
        self.cache: dict[int, np.ndarray] = {}

    def prefetch(self, starts: np.ndarray, counts: np.ndarray) -> None:
        if self.local or len(starts) == 0:
            return
        order = np.argsort(starts, kind="stable")
        with self.folder.open(self.name, "rb") as f:
            for i in order.tolist():
                start, count = int(starts[i]), int(counts[i])
                if start not in self.cache:
                    f.seek(start * self.dtype.itemsize)
                    self.cache[start] = np.frombuffer(f.read(count * self.dtype.itemsize), dtype=self.dtype)

    def get(self, start: int, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, self.dtype)
        if self.local:
            size = count * self.dtype.itemsize
            return np.frombuffer(os.pread(self.fd, size, start * self.dtype.itemsize), dtype=self.dtype)
        return self.cache[start]

    def release(self) -> None:
        """Forgets the prefetched ranges (the caller has verified the pairs that needed them)."""
        self.cache.clear()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
