"""Decoding a web page's bytes: the charset it declares first, detection after, and a bounded share of bad bytes.

datatrove decodes a WARC payload as UTF-8 and, failing that, as whatever cchardet guesses; the charset the server
sent (``Content-Type: text/html; charset=...``) and the page's own ``<meta charset>`` are ignored, so real Shift-JIS,
GB2312 and EUC-KR pages were decoded wrongly or dropped, and a UTF-8 page with one bad byte was dropped whole. Here
the candidates are tried in order: a byte-order mark, the HTTP header's charset, the ``<meta>`` charset in the first
4 KiB, UTF-8, then cchardet's guess. The first that decodes cleanly wins; if none does, the candidate with the fewest
undecodable bytes is used with replacement characters, and the page is kept when their share is at most
``max_replaced_share`` (the share is recorded on the document). Legacy labels are widened to the superset browsers
use (WHATWG encoding standard): GB2312/GBK -> GB18030, Shift_JIS -> CP932, EUC-KR -> CP949, ISO-8859-1 -> CP1252.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_META = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HEADER = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
WIDER = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "gb_2312-80": "gb18030",
         "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "ms_kanji": "cp932",
         "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "iso-8859-1": "cp1252", "latin1": "cp1252",
         "latin-1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252", "iso-8859-9": "cp1254", "tis-620": "cp874",
         "big5": "big5hkscs", "x-mac-roman": "mac-roman", "euc-jp": "euc_jis_2004"}


@dataclass
class Decoded:
    text: str
    encoding: str  # the Python codec used
    source: str  # where the charset came from: bom, http, meta, utf-8, detected
    replaced_share: float  # undecodable bytes, as a share of the characters


def codec_for(label: str | bytes | None) -> str | None:
    """The Python codec for a charset label (widened as browsers do), or None if Python has none."""
    if not label:
        return None
    name = (label.decode("ascii", "ignore") if isinstance(label, bytes) else label).strip().lower()
    name = WIDER.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def http_charset(content_type: str | None) -> str | None:
    m = _HEADER.search(content_type or "")
    return m.group(1) if m else None


def candidates(content: bytes, content_type: str | None, detect: bool = True) -> list[tuple[str, str]]:
    """(codec, source) to try, in order, without repeats; cchardet's guess last when ``detect``."""
    found: list[tuple[str, str]] = []
    for bom, name in _BOMS:
        if content.startswith(bom):
            found.append((name, "bom"))
    meta = _META.search(content[:4096])
    for label, source in ((http_charset(content_type), "http"), (meta.group(1) if meta else None, "meta"),
                          ("utf-8", "utf-8")):
        if (codec := codec_for(label)) is not None:
            found.append((codec, source))
    if detect:
        import cchardet  # a datatrove[processing] dependency

        if (codec := codec_for(cchardet.detect(content[:65536])["encoding"])) is not None:
            found.append((codec, "detected"))
    seen, out = set(), []
    for codec, source in found:
        if codec not in seen:
            seen.add(codec)
            out.append((codec, source))
    return out


SINGLE_BYTE = re.compile(r"^(cp12[0-9]{2}|iso8859_[0-9]+|mac_roman|cp874|koi8_[ru]|cp85[0-9])$")
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _lenient(content: bytes, codec: str, source: str) -> Decoded:
    text = content.decode(codec, errors="replace")
    return Decoded(text, codec, source, text.count("\ufffd") / max(len(text), 1))


def decode_page(content: bytes, content_type: str | None, max_replaced_share: float) -> Decoded | None:
    """The page's text, or None when every candidate leaves more undecodable bytes than allowed.

    Order: a byte-order mark; a declared multi-byte charset (HTTP, then ``<meta>``) that decodes cleanly; UTF-8,
    cleanly or with at most ``max_replaced_share`` bad bytes when the page holds real UTF-8 sequences (a single-byte
    charset decodes any bytes, so a declared ISO-8859-1 - a common server default - or a guessed one would turn
    such a page into mojibake); a declared single-byte charset; cchardet's guess; else the candidate with the
    fewest bad bytes, if few enough."""
    declared = [(c, s) for c, s in candidates(content, content_type, detect=False) if s in ("bom", "http", "meta")]
    for codec, source in declared:
        if source == "bom" or not SINGLE_BYTE.match(codec):
            try:
                return Decoded(content.decode(codec), codec, source, 0.0)
            except UnicodeDecodeError:
                pass
    utf8 = _lenient(content, "utf-8", "utf-8")
    if utf8.replaced_share == 0 or (utf8.replaced_share <= max_replaced_share and _UTF8_MULTIBYTE.search(content)):
        return utf8
    tried = candidates(content, content_type)  # detection only now: most pages are settled above
    for codec, source in tried:
        if source == "utf-8":
            continue
        try:
            return Decoded(content.decode(codec), codec, source, 0.0)
        except UnicodeDecodeError:
            pass
    best = min((_lenient(content, codec, source) for codec, source in tried), key=lambda d: d.replaced_share,
               default=None)
    return best if best is not None and best.replaced_share <= max_replaced_share else None
