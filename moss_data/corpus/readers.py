"""Readers that never die on one bad record.

datatrove's readers raise on a corrupt gzip stream or a truncated WARC record (which aborts the local run), stop
reading a JSONL file at its first invalid UTF-8 byte, and skip empty documents without counting them. These
subclasses keep datatrove's sharding, stats and executors but turn every bad record into a counted skip
(``skipped_<reason>`` in the step's stats) plus a line in a skip log, so a person can see what was dropped and why.

Skip reasons: ``corrupt_compression``, ``truncated_warc``, ``invalid_utf8``, ``bad_json``, ``not_an_object``,
``empty``, ``corrupt_parquet``, ``unreadable_file``, plus the code-folder reasons in :mod:`code_reader`.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Iterator

import orjson
from datatrove.data import Document
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.pipeline.readers.parquet import ParquetReader
from datatrove.pipeline.readers.warc import WarcReader, process_record
from loguru import logger

# Errors a damaged compressed stream raises part-way through (gzip, zlib, zstd, lzma all end up here).
COMPRESSION_ERRORS: tuple[type[BaseException], ...] = (EOFError, gzip.BadGzipFile, zlib.error)
try:  # zstandard is a datatrove[io] dependency
    import zstandard

    COMPRESSION_ERRORS += (zstandard.ZstdError,)
except ImportError:  # pragma: no cover
    pass


def iter_lines(f, block_size: int = 1 << 16) -> Iterator[bytes]:
    """Lines of a binary stream by block reads (zstd's decompression reader cannot be iterated line by line).

    ``read1`` returns what one decompression step gives, so the lines before a damaged spot in a compressed file
    are yielded before the error is raised; ``read(n)`` would raise first and lose them.
    """
    read = getattr(f, "read1", f.read)
    parts: list[bytes] = []  # pieces of the unfinished line (a list: a 50 MB line must not be re-copied per block)
    while block := read(block_size):
        if b"\n" not in block:
            parts.append(block)
            continue
        first, *middle, last = block.split(b"\n")
        yield b"".join(parts) + first
        yield from middle
        parts = [last] if last else []
    if parts:
        yield b"".join(parts)


class SkipLog:
    """Counts skipped records on a pipeline step and appends one JSON line per skip to a per-rank log file."""

    def __init__(self, step, folder: DataFolderLike | None, source: str):
        self.step = step
        self.folder = get_datafolder(folder) if folder is not None else None
        self.source = source
        self._file = None

    def open(self, rank: int) -> None:
        if self.folder is not None:
            self._file = self.folder.open(f"{self.source}_{rank:05d}.jsonl", "wb")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def skip(self, reason: str, path: str, record: int | str | None = None, detail: str = "") -> None:
        self.step.stat_update(f"skipped_{reason}")
        self.step.stat_update("skipped")
        logger.warning(f"skipped {reason}: {path}" + (f" record {record}" if record is not None else "") + f" {detail}")
        if self._file is not None:
            entry = {"source": self.source, "path": path, "record": record, "reason": reason, "detail": detail[:500]}
            self._file.write(orjson.dumps(entry) + b"\n")
            self._file.flush()  # a crash later in the task must not lose the skips already seen


class SkipCountingMixin:
    """Shared plumbing: a skip log opened for the task's rank, and empty documents counted instead of dropped silently."""

    skip_log: SkipLog

    def _init_skip_log(self, skip_log_folder: DataFolderLike | None, source: str) -> None:
        self.skip_log = SkipLog(self, skip_log_folder, source)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self.skip_log.open(rank)
        try:
            yield from super().run(data, rank, world_size)
        finally:
            self.skip_log.close()

    def _document_or_skip(self, data: dict, path: str, index: int | str) -> Document | None:
        text = data.get(self.text_key)
        if text is None or (isinstance(text, str) and not text.strip()):
            self.skip_log.skip("empty", path, index)
            return None
        if not isinstance(text, str):
            self.skip_log.skip("bad_json", path, index, f"'{self.text_key}' is {type(text).__name__}, not a string")
            return None
        return self.get_document_from_dict(data, path, index)


class SafeJsonlReader(SkipCountingMixin, JsonlReader):
    """JSONL(.gz/.zst) reader: decodes line by line so one bad line costs one record, not the rest of the file."""

    name = "🐿 Jsonl (safe)"

    def __init__(self, data_folder: DataFolderLike, *, source: str = "jsonl", skip_log_folder=None, **kwargs):
        super().__init__(data_folder, **kwargs)
        self._init_skip_log(skip_log_folder, source)

    def read_file(self, filepath: str) -> Iterator[Document]:
        try:
            with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
                for li, raw in enumerate(iter_lines(f)):
                    doc = self._parse_line(raw, filepath, li)
                    if doc is not None:
                        yield doc
        except COMPRESSION_ERRORS as e:
            self.skip_log.skip("corrupt_compression", filepath, None, f"stopped reading this file: {e}")
        except OSError as e:
            self.skip_log.skip("unreadable_file", filepath, None, str(e))

    def _parse_line(self, raw: bytes, filepath: str, li: int) -> Document | None:
        with self.track_time():
            if not raw.strip():
                return None
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                self.skip_log.skip("invalid_utf8", filepath, li, str(e))
                return None
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                self.skip_log.skip("bad_json", filepath, li, str(e))
                return None
            if not isinstance(data, dict):
                self.skip_log.skip("not_an_object", filepath, li, f"a JSON {type(data).__name__}")
                return None
            return self._document_or_skip(data, filepath, li)


class SafeWarcReader(SkipCountingMixin, WarcReader):
    """WARC/WET reader (plain, gzip or zstd): a truncated or unparsable record ends that file with a counted skip."""

    name = "🕷 Warc (safe)"

    def __init__(self, data_folder: DataFolderLike, *, source: str = "warc", skip_log_folder=None, **kwargs):
        super().__init__(data_folder, **kwargs)
        self._init_skip_log(skip_log_folder, source)

    def read_file(self, filepath: str) -> Iterator[Document]:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        ri = -1
        # warcio reads per-record gzip members itself and notices a cut member; a GzipFile around the whole file
        # (what datatrove's "infer" gives) ends silently on the first read error and loses the good records too.
        compression = None if filepath.endswith(".gz") else self.compression
        try:
            with self.data_folder.open(filepath, "rb", compression=compression) as f:
                for ri, record in enumerate(ArchiveIterator(f)):
                    doc = self._record_to_document(record, filepath, ri)
                    if doc is not None:
                        yield doc
        except ArchiveLoadFailed as e:
            self.skip_log.skip("truncated_warc", filepath, ri + 1, f"stopped reading this file: {e}")
        except COMPRESSION_ERRORS as e:
            self.skip_log.skip("corrupt_compression", filepath, ri + 1, f"stopped reading this file: {e}")
        except OSError as e:
            self.skip_log.skip("unreadable_file", filepath, ri + 1, str(e))

    def _record_to_document(self, record, filepath: str, ri: int) -> Document | None:
        with self.track_time():
            declared = record.rec_headers.get_header("Content-Length")
            if record.rec_type not in ("response", "conversion"):
                return None
            # process_record reads the payload; a record cut short yields fewer bytes than it declares.
            stream = record.raw_stream
            extracted = process_record(record)
            if not extracted:  # not HTML (or undecodable): its payload was not read, so no truncation check
                self.stat_update("not_html")
                return None
            missing = getattr(stream, "limit", None)  # bytes the record declared but the file did not have
            if declared is not None and missing not in (None, 0):
                self.skip_log.skip("truncated_warc", filepath, ri, f"{missing} of {declared} bytes missing")
                return None
            return self._document_or_skip(extracted, filepath, ri)


class SafeParquetReader(SkipCountingMixin, ParquetReader):
    """Parquet reader: an unreadable or corrupt file is a counted skip; empty or non-string texts are counted too."""

    name = "📒 Parquet (safe)"

    def __init__(self, data_folder: DataFolderLike, *, source: str = "parquet", skip_log_folder=None, **kwargs):
        super().__init__(data_folder, **kwargs)
        self._init_skip_log(skip_log_folder, source)

    def read_file(self, filepath: str) -> Iterator[Document]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        li = 0
        try:
            with self.data_folder.open(filepath, "rb") as f, pq.ParquetFile(f) as pqf:
                for batch in pqf.iter_batches(batch_size=self.batch_size):
                    for row in batch.to_pylist():
                        doc = self._document_or_skip(row, filepath, li)
                        li += 1
                        if doc is not None:
                            yield doc
        except (pa.ArrowException, OSError) as e:
            self.skip_log.skip("corrupt_parquet", filepath, li, f"stopped reading this file: {e}")

