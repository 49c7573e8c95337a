"""WARC records framed from a decompressed byte stream, checked against their declared Content-Length.

warcio reads a record's block by its Content-Length and trusts it: a length too short leaves a cut record that is
kept as if whole, one too long swallows the records after it, and a WARC gzipped as one stream (not one gzip member
per record) stops it after the first record. Here the file is decompressed as one stream (Python's gzip reads both
layouts), and each record is framed: its header lines, then ``Content-Length`` bytes, which must be followed by the
record separator (``CRLF CRLF``) and then the next ``WARC/`` version line or the end. When they are not, the record's
real end is found by searching for the next separator + version line; the record is returned with the mismatch
named (its neighbours are intact), and the caller counts it as a skip. warcio then parses each framed record alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

SEPARATOR = b"\r\n\r\n"
NEXT_RECORD = SEPARATOR + b"WARC/"
_CHUNK = 1 << 20


class PushbackReader:
    """A binary stream read through a buffer that can be looked ahead in and given back to."""

    def __init__(self, stream):
        self.stream = stream
        self.buffer = bytearray()
        self.eof = False
        self.consumed = 0  # bytes handed out (tell())
        self.error: Exception | None = None  # what stopped the stream (a damaged compressed file), raised when due
        self._read = getattr(stream, "read1", None) or stream.read  # read1: what one step gives, before any error

    def raise_if_broken(self) -> None:
        """At the end of what could be read: the stream's error, if it ended on one."""
        if self.error is not None and not self.buffer:
            raise self.error

    def _fill(self, size: int) -> None:
        while len(self.buffer) < size and not self.eof:
            try:
                chunk = self._read(max(_CHUNK, size - len(self.buffer)))
            except Exception as e:  # noqa: BLE001  (a damaged stream: what was read before it is still served)
                self.error, chunk = e, b""
            if not chunk:
                self.eof = True
            self.buffer += chunk

    def peek(self, size: int) -> bytes:
        self._fill(size)
        return bytes(self.buffer[:size])

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            while not self.eof:
                self._fill(len(self.buffer) + _CHUNK)
            size = len(self.buffer)
        self._fill(size)
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        self.consumed += len(out)
        return out

    def tell(self) -> int:
        return self.consumed

    def readline(self, limit: int = 1 << 16) -> bytes:
        while True:
            end = self.buffer.find(b"\n", 0, limit)
            if end >= 0:
                return self.read(end + 1)
            if self.eof or len(self.buffer) >= limit:
                return self.read(limit)
            self._fill(len(self.buffer) + _CHUNK)

    def skip(self, size: int) -> int:
        """Discards up to ``size`` bytes without holding them; returns how many were there."""
        skipped = 0
        while skipped < size:
            got = len(self.read(min(_CHUNK, size - skipped)))
            if not got:
                break
            skipped += got
        return skipped

    def find(self, pattern: bytes, limit: int) -> int:
        """Position of ``pattern`` ahead in the stream (reading up to ``limit`` bytes ahead), or -1."""
        start = 0
        while True:
            pos = self.buffer.find(pattern, start)
            if pos >= 0:
                return pos
            if self.eof or len(self.buffer) >= limit:
                return -1
            start = max(0, len(self.buffer) - len(pattern) + 1)
            self._fill(len(self.buffer) + _CHUNK)

    def unread(self, data: bytes) -> None:
        self.buffer[:0] = data
        self.consumed -= len(data)


@dataclass
class FramedRecord:
    index: int  # position in the file, 0-based
    header: bytes  # the WARC header block, its version line included, without the blank line that ends it
    block: bytes  # the content block as framed (b"" when it was not read: ``problem`` says why)
    declared: int | None  # Content-Length
    problem: str | None = None  # None, or a skip reason: content_length_short / content_length_long /
    # truncated_warc / too_large / no_content_length / unparsable_warc_record
    detail: str = ""

    @property
    def raw(self) -> bytes:
        """The record as a file of one record, for warcio to parse."""
        return self.header + b"\r\n" + self.block + SEPARATOR


def header_value(header: bytes, name: bytes) -> bytes:
    """A field of a WARC header block (b"" when absent)."""
    for line in header.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return b""


def _content_length(header: bytes) -> int | None:
    try:
        return int(header_value(header, b"Content-Length"))
    except ValueError:  # absent or not a number
        return None


def _at_record_end(reader: PushbackReader) -> bool:
    """Whether the stream continues with the record separator, then the next record or the end of the file."""
    ahead = reader.peek(len(NEXT_RECORD))
    if not ahead.startswith(SEPARATOR):
        return False
    rest = ahead[len(SEPARATOR):]
    return rest == b"WARC/" or not rest.strip()


def _skip_to_next_record(reader: PushbackReader, max_record_bytes: int) -> tuple[bool, int]:
    """Skips past the next record separator that a ``WARC/`` line follows: (found, bytes skipped). Not found within
    ``max_record_bytes``: that much is skipped."""
    pos = reader.find(NEXT_RECORD, limit=max_record_bytes + _CHUNK)
    return pos >= 0, reader.skip(pos + len(SEPARATOR) if pos >= 0 else max_record_bytes)


def frame_records(stream, max_record_bytes: int) -> Iterator[FramedRecord]:
    """The records of a (decompressed) WARC stream, each checked against its Content-Length. Bytes before a
    ``WARC/`` line that cannot start a record are skipped up to the next record."""
    reader = stream if isinstance(stream, PushbackReader) else PushbackReader(stream)
    index = 0
    while True:
        line = reader.readline()
        while line and not line.strip(b"\r\n"):  # blank lines (CRLF, LF, or a stray CR CR LF)
            line = reader.readline()
        if not line:
            reader.raise_if_broken()
            return
        if not line.startswith(b"WARC/"):
            # not a record start (the rest of a damaged record): resynchronise on the next record, and say so
            reader.unread(SEPARATOR + line)
            found, skipped = _skip_to_next_record(reader, max_record_bytes)
            yield FramedRecord(index, b"", b"", None, "unparsable_warc_record",
                               f"{skipped - len(SEPARATOR)} bytes that do not start a record, skipped up to the next one")
            index += 1
            if not found:
                reader.raise_if_broken()
                return
            continue
        header_lines = [line.rstrip(b"\r\n")]
        while (line := reader.readline()) and line.strip(b"\r\n"):
            header_lines.append(line.rstrip(b"\r\n"))
        header = b"\r\n".join(header_lines) + b"\r\n"
        declared = _content_length(header)
        if line == b"":
            reader.raise_if_broken()  # a damaged stream is reported as such, not as a cut record
            yield FramedRecord(index, header, b"", declared, "truncated_warc", "the file ends inside the record's header")
            return
        if declared is None:
            yield FramedRecord(index, header, b"", None, "no_content_length", "no valid Content-Length header")
            if not _skip_to_next_record(reader, max_record_bytes)[0]:
                return
            index += 1
            continue
        if declared > max_record_bytes:
            got = reader.skip(declared)
            if got < declared:
                reader.raise_if_broken()
            problem = "too_large" if got == declared else "truncated_warc"
            yield FramedRecord(index, header, b"", declared, problem,
                               f"declares {declared} bytes (max_doc_bytes {max_record_bytes})")
            if got < declared:
                return
            if _at_record_end(reader):
                reader.skip(len(SEPARATOR))
            index += 1
            continue
        block = reader.read(declared)
        if len(block) < declared:
            reader.raise_if_broken()
            yield FramedRecord(index, header, block, declared, "truncated_warc",
                               f"{declared - len(block)} of {declared} declared bytes missing at the end of the file")
            return
        if _at_record_end(reader):
            reader.skip(len(SEPARATOR))
            yield FramedRecord(index, header, block, declared)
        else:
            inside = block.find(NEXT_RECORD)
            if inside >= 0:  # declared too long: the block holds the start of the next record(s)
                reader.unread(block[inside + len(SEPARATOR):])
                yield FramedRecord(index, header, block[:inside], declared, "content_length_long",
                                   f"declares {declared} bytes, the record holds {inside}")
            else:  # declared too short: the rest of the block is still ahead
                pos = reader.find(NEXT_RECORD, limit=max_record_bytes - declared + _CHUNK)
                rest = reader.read(pos) if pos >= 0 else reader.read(max_record_bytes)
                if pos >= 0:
                    reader.skip(len(SEPARATOR))
                yield FramedRecord(index, header, block + rest, declared, "content_length_short",
                                   f"declares {declared} bytes, the record holds {declared + len(rest)}")
                if pos < 0:
                    return
        index += 1
