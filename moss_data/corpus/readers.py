"""Readers that never die on one bad record.

datatrove's readers raise on a corrupt gzip stream or a truncated WARC record (which aborts the local run), stop
reading a JSONL file at its first invalid UTF-8 byte, and skip empty documents without counting them. These
subclasses keep datatrove's sharding, stats and executors but turn every bad record into a counted skip
(``skipped_<reason>`` in the step's stats) plus a line in a skip log, so a person can see what was dropped and why.

Skip reasons: ``corrupt_compression``, ``invalid_utf8``, ``bad_json``, ``not_an_object``, ``empty``,
``corrupt_parquet``, ``unreadable_file``; files: ``symlink_loop``, ``dangling_symlink``, ``symlink_outside_root``,
``not_a_regular_file``; WARC records: ``truncated``, ``content_length_short``, ``content_length_long``,
``no_content_length``, ``too_large``, ``unparsable_warc_record``, ``not_html``, ``undecodable``; plus the
code-folder reasons in :mod:`code_reader`.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import stat
import zlib
from pathlib import Path
from typing import Iterator

import orjson
from datatrove.data import Document
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.pipeline.readers.parquet import ParquetReader
from datatrove.pipeline.readers.warc import WarcReader
from loguru import logger

from moss_data.corpus.charset import decode_page
from moss_data.corpus.warc import FramedRecord, PushbackReader, frame_records, header_value

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


def file_problem(folder, filepath: str, root: str = "") -> tuple[str, str] | None:
    """Why a listed file must not be read, as (skip reason, detail), or None. On local folders a symlink is read only
    when it leads to a regular file inside ``root`` (a folder relative to ``folder``: the source, or for code the
    repository): a link that loops or points at one of its own folders (``symlink_loop``), a dangling one
    (``dangling_symlink``), one leading out of the root (``symlink_outside_root``) and anything that is not a regular
    file (``not_a_regular_file``: a FIFO would block the reader forever, a device or socket too) are skipped.
    Object stores hold regular objects only."""
    if not folder.is_local():
        return None
    path = Path(folder.resolve_paths(filepath))
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "unreadable_file", "vanished after listing"
    if stat.S_ISLNK(info.st_mode):
        try:
            target = path.resolve(strict=True)
        except RuntimeError as e:  # Python < 3.13 reports a loop so
            return "symlink_loop", str(e)
        except FileNotFoundError:
            return "dangling_symlink", f"-> {os.readlink(path)}"
        except OSError as e:
            if e.errno == errno.ELOOP:
                return "symlink_loop", str(e)
            return "unreadable_file", str(e)
        inside = Path(folder.resolve_paths(root or "")).resolve()
        if target.is_dir() and path.parent.resolve().is_relative_to(target):
            return "symlink_loop", f"-> {os.readlink(path)} (an ancestor of the link)"
        if not target.is_relative_to(inside):
            return "symlink_outside_root", f"-> {target}"
        info = os.stat(target)
    if not stat.S_ISREG(info.st_mode):
        kind = ("directory" if stat.S_ISDIR(info.st_mode) else "fifo" if stat.S_ISFIFO(info.st_mode) else
                "socket" if stat.S_ISSOCK(info.st_mode) else "device")
        return "not_a_regular_file", kind
    return None


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

    def _unsafe(self, filepath: str, root: str = "") -> bool:
        """Skips (counted, logged) a listed file that must not be read: see :func:`file_problem`."""
        problem = file_problem(self.data_folder, filepath, root)
        if problem is None:
            return False
        self.skip_log.skip(problem[0], filepath, None, problem[1])
        return True

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
        if self._unsafe(filepath):
            return
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


HTML_TYPES = ("text/html", "application/xhtml+xml")
GZIP_MAGIC = b"\x1f\x8b"
NOT_DOCUMENTS = (b"request", b"metadata", b"warcinfo", b"revisit", b"resource", b"continuation")


class SafeWarcReader(SkipCountingMixin, WarcReader):
    """WARC/WET reader (plain, gzip per record or as one stream, zstd): records framed and checked against their
    Content-Length (:mod:`moss_data.corpus.warc`), so a bad length costs that record, not its neighbours; pages
    decoded with the charset they declare before detection (:mod:`moss_data.corpus.charset`). Every response or
    conversion record becomes a document or a counted, logged skip."""

    name = "🕷 Warc (safe)"

    def __init__(self, data_folder: DataFolderLike, *, source: str = "warc", skip_log_folder=None,
                 max_record_bytes: int = 50_000_000, max_replaced_share: float = 0.01, **kwargs):
        super().__init__(data_folder, **kwargs)
        self.max_record_bytes = max_record_bytes
        self.max_replaced_share = max_replaced_share
        self._init_skip_log(skip_log_folder, source)

    def read_file(self, filepath: str) -> Iterator[Document]:
        if self._unsafe(filepath):
            return
        ri = -1
        try:
            # decompressed as one stream: Python's gzip reads one member per record and one member for the whole file
            with self.data_folder.open(filepath, "rb", compression=self.compression) as f:
                stream = PushbackReader(f)
                if stream.peek(2) == GZIP_MAGIC:  # gzip whatever the name says (pywb ships one as .warc.gz.bad)
                    stream = PushbackReader(gzip.GzipFile(fileobj=stream))
                if not stream.peek(5).startswith(b"WARC/"):
                    yield from self._read_arc(stream, filepath)
                    return
                for record in frame_records(stream, self.max_record_bytes):
                    ri = record.index
                    doc = self._framed_to_document(record, filepath)
                    if doc is not None:
                        yield doc
        except COMPRESSION_ERRORS as e:
            self.skip_log.skip("corrupt_compression", filepath, ri + 1, f"stopped reading this file: {e}")
        except OSError as e:
            self.skip_log.skip("unreadable_file", filepath, ri + 1, str(e))

    def _read_arc(self, f, filepath: str) -> Iterator[Document]:
        """A legacy ARC file (or anything not starting with a WARC record): warcio reads it, records converted to
        WARC responses; a damaged file ends with a counted skip."""
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        ri = -1
        try:
            for ri, record in enumerate(ArchiveIterator(f, arc2warc=True)):
                if record.rec_type not in ("response", "conversion"):
                    continue
                with self.track_time():
                    page = self._page(record)
                if isinstance(page, str):
                    self.skip_log.skip(page, filepath, ri, record.rec_headers.get_header("WARC-Target-URI") or "")
                    continue
                doc = self._document_or_skip(page, filepath, ri)
                if doc is not None:
                    yield doc
        except ArchiveLoadFailed as e:
            self.skip_log.skip("truncated_warc", filepath, ri + 1, f"stopped reading this file: {e}")

    def _framed_to_document(self, framed: FramedRecord, filepath: str) -> Document | None:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        with self.track_time():
            kind = header_value(framed.header, b"WARC-Type")
            if kind in NOT_DOCUMENTS:
                return None
            if framed.problem is not None:  # a page record, or a damaged span that may have been one
                self.skip_log.skip(framed.problem, filepath, framed.index, framed.detail)
                return None
            if kind not in (b"response", b"conversion"):
                return None
            try:
                record = next(iter(ArchiveIterator(io.BytesIO(framed.raw))))
                page = self._page(record)
            except (ArchiveLoadFailed, StopIteration, ValueError) as e:
                self.skip_log.skip("unparsable_warc_record", filepath, framed.index, str(e))
                return None
            if isinstance(page, str):
                self.skip_log.skip(page, filepath, framed.index, header_value(framed.header, b"WARC-Target-URI")
                                   .decode("utf-8", "replace"))
                return None
            return self._document_or_skip(page, filepath, framed.index)

    def _page(self, record) -> dict | str:
        """The record's page as a document dict, or the skip reason (``not_html``, ``undecodable``)."""
        mime = record.rec_headers.get_header("WARC-Identified-Payload-Type")
        content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
        if mime is None and content_type:
            mime = content_type.split(";")[0].strip().lower()
        content = record.content_stream().read()
        if mime is None:  # older crawls: no payload type and no HTTP header
            import magic

            mime = magic.from_buffer(content[:8192], mime=True)
        plain_ok = record.rec_type == "conversion" and mime == "text/plain"
        if mime not in HTML_TYPES and not plain_ok:
            return "not_html"
        decoded = decode_page(content, content_type, self.max_replaced_share)
        if decoded is None:
            return "undecodable"
        headers = record.rec_headers
        page = {"text": decoded.text, "id": headers.get_header("WARC-Record-ID"),
                "url": headers.get_header("WARC-Target-URI"), "date": headers.get_header("WARC-Date"),
                "charset": decoded.encoding, "charset_source": decoded.source}
        if decoded.replaced_share:
            page["replaced_share"] = round(decoded.replaced_share, 6)
        return page


class SafeParquetReader(SkipCountingMixin, ParquetReader):
    """Parquet reader: an unreadable or corrupt file is a counted skip; empty or non-string texts are counted too."""

    name = "📒 Parquet (safe)"

    def __init__(self, data_folder: DataFolderLike, *, source: str = "parquet", skip_log_folder=None, **kwargs):
        super().__init__(data_folder, **kwargs)
        self._init_skip_log(skip_log_folder, source)

    def read_file(self, filepath: str) -> Iterator[Document]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._unsafe(filepath):
            return
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

