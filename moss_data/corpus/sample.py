"""The sample corpus for `just demo` and the tests, built at set-up from real text the project does not ship.

English and Chinese web pages come from Debian documentation packages (downloaded with ``apt-get download``, never
installed): the Debian Reference (en, zh-cn) and LibreOffice help (en-US, zh-CN; many zh-CN pages are still
English, which the language router must notice). Chinese prose comes from ``fortunes-zh``. Code is a slice of this
interpreter's own standard library plus one installed package, each a "repository" with its license file.

Layout under ``<out>/raw``::

    web/*.warc.gz         HTML pages as WARC response records (exercises the WARC path and gzip)
    jsonl/*.jsonl.gz      plain-text documents (fortunes-zh, grouped)
    parquet/*.parquet     plain-text sections of the Debian Reference text edition
    code/<repo>/...       source files with a LICENSE
"""

from __future__ import annotations

import gzip
import io
import random
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import orjson
from loguru import logger

from moss_data.io.atomic import atomic_folder, atomic_write

DEB_PACKAGES = (
    "debian-reference-en",
    "debian-reference-zh-cn",
    "libreoffice-help-en-us",
    "libreoffice-help-zh-cn",
    "fortunes-zh",
)
STDLIB_PACKAGES = ("json", "email", "http", "logging", "urllib", "concurrent", "importlib", "xml", "wsgiref", "sqlite3")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
LIBREOFFICE_SECTIONS = ("text/shared/guide", "text/scalc/guide", "text/swriter/guide", "text/simpress/guide")


class SampleCorpusError(RuntimeError):
    pass


def fetch_debs(cache: Path) -> dict[str, Path]:
    """Downloads the Debian packages into ``cache`` (once) and unpacks them; returns package -> unpacked root."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p in DEB_PACKAGES if not list(cache.glob(f"{p}_*.deb"))]
    if missing:
        if shutil.which("apt-get") is None:
            raise SampleCorpusError(
                f"apt-get not found: put the .deb files of {', '.join(missing)} into {cache} and run again"
            )
        cmd = ["apt-get", "download", *missing]
        result = subprocess.run(cmd, cwd=cache, capture_output=True, text=True)
        if result.returncode != 0:  # package lists missing or stale: refresh once, then retry
            logger.info("sample: apt-get download failed, running apt-get update once")
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True)
            result = subprocess.run(cmd, cwd=cache, capture_output=True, text=True)
        if result.returncode != 0:
            raise SampleCorpusError(
                f"`{' '.join(cmd)}` failed in {cache}:\n{result.stderr.strip()}\n"
                "Run `apt-get update` (as root) or copy those .deb files into that folder by hand."
            )
    roots = {}
    for package in DEB_PACKAGES:
        deb = sorted(cache.glob(f"{package}_*.deb"))[-1]
        root = cache / "root" / package
        if not root.exists():
            with atomic_folder(root) as tmp:
                subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        roots[package] = root
    return roots


def _warc_writer(path: Path):
    from warcio.warcwriter import WARCWriter

    f = open(path, "wb")
    return f, WARCWriter(f, gzip=True)


def _write_html_record(writer, uri: str, html: bytes) -> None:
    from warcio.statusandheaders import StatusAndHeaders

    http_headers = StatusAndHeaders(
        "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
    )
    record = writer.create_warc_record(
        uri,
        "response",
        payload=io.BytesIO(html),
        http_headers=http_headers,
        warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"},
    )
    writer.write_record(record)


def build_web(roots: dict[str, Path], out: Path, pages_per_language: int, seed: int) -> int:
    """Two WARC files: the Debian Reference chapters, and sampled LibreOffice help pages."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    f, writer = _warc_writer(out / "debian-reference-000.warc.gz")
    with f:
        for package in ("debian-reference-en", "debian-reference-zh-cn"):
            for page in sorted((roots[package] / "usr/share/debian-reference").glob("*.html")):
                _write_html_record(writer, f"file:///usr/share/debian-reference/{page.name}", page.read_bytes())
                n += 1
    rng = random.Random(seed)
    for i, (package, lang) in enumerate((("libreoffice-help-en-us", "en-US"), ("libreoffice-help-zh-cn", "zh-CN"))):
        base = roots[package] / "usr/share/libreoffice/help" / lang
        pages = sorted(p for section in LIBREOFFICE_SECTIONS for p in (base / section).glob("*.html"))
        pages = rng.sample(pages, min(pages_per_language, len(pages)))
        f, writer = _warc_writer(out / f"libreoffice-help-{i:03d}.warc.gz")
        with f:
            for page in sorted(pages):
                rel = page.relative_to(roots[package])
                _write_html_record(writer, f"file:///{rel}", page.read_bytes())
                n += 1
    return n


def build_jsonl(roots: dict[str, Path], out: Path, per_doc: int = 8) -> int:
    """fortunes-zh (Tang and Song poems, quotes): entries split on '%' lines, ``per_doc`` entries a document."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with gzip.GzipFile(out / "fortunes-zh-000.jsonl.gz", "wb", mtime=0) as f:
        for name in ("tang300", "song100", "chinese"):
            path = roots["fortunes-zh"] / "usr/share/games/fortunes" / name
            raw = ANSI_ESCAPE.sub("", path.read_text(encoding="utf-8", errors="replace"))  # terminal colours
            entries = [e.strip() for e in raw.split("\n%\n")]
            entries = [e for e in entries if e][:400]
            for i in range(0, len(entries), per_doc):
                text = "\n\n".join(entries[i : i + per_doc])
                f.write(orjson.dumps({"id": f"fortunes-zh/{name}/{i // per_doc}", "text": text}) + b"\n")
                n += 1
    return n


def build_parquet(roots: dict[str, Path], out: Path) -> int:
    """The Debian Reference text editions, one row per numbered section."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for package, lang in (("debian-reference-en", "en"), ("debian-reference-zh-cn", "zh-cn")):
        path = roots[package] / f"usr/share/debian-reference/debian-reference.{lang}.txt.gz"
        text = gzip.open(path, "rt", encoding="utf-8", errors="replace").read()
        # sections start at column 0 with "1.2. Title" or "1.2.3. Title"; one-line parts are table-list entries
        parts = re.split(r"\n(?=\d+(?:\.\d+){1,2}\.[ \u00a0]\S)", text)  # headings use no-break spaces
        for i, part in enumerate(parts):
            if len(part.strip()) >= 300:
                rows.append({"id": f"debian-reference.{lang}/{i}", "text": part.strip()})
    pq.write_table(pa.Table.from_pylist(rows), out / "debian-reference-text-000.parquet")
    return len(rows)


def build_code(out: Path) -> int:
    """Two repositories: part of this interpreter's standard library (PSF license) and the installed PyYAML."""
    out.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    repo = out / "cpython-stdlib"
    n = 0
    for package in STDLIB_PACKAGES:
        src = stdlib / package
        if src.is_dir():
            shutil.copytree(src, repo / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    license_file = stdlib / "LICENSE.txt"
    if license_file.is_file():
        shutil.copy(license_file, repo / "LICENSE")
    n += sum(1 for p in repo.rglob("*") if p.is_file())
    import yaml

    yaml_dir = Path(yaml.__file__).parent
    repo = out / "pyyaml"
    shutil.copytree(yaml_dir, repo / "yaml", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"), dirs_exist_ok=True)
    for dist in (d for d in yaml_dir.parent.glob("*.dist-info") if d.name.lower().startswith("pyyaml-")):
        for lic in list(dist.glob("LICENSE*")) + list(dist.glob("licenses/LICENSE*")):
            shutil.copy(lic, repo / "LICENSE")
    n += sum(1 for p in repo.rglob("*") if p.is_file())
    return n


def sample_counts(raw: Path) -> dict | None:
    """What a complete sample holds (documents per kind), None if ``raw`` is not a complete sample."""
    done = raw / ".complete"
    return orjson.loads(done.read_bytes()) if done.exists() else None


def build_sample_corpus(out: Path, pages_per_language: int = 150, seed: int = 0, force: bool = False) -> Path:
    """Builds ``<out>/raw`` (see module docstring) unless it is already complete. Returns the raw folder."""
    raw = out / "raw"
    done = raw / ".complete"
    if done.exists() and not force:
        logger.info(f"sample: {raw} already built")
        return raw
    roots = fetch_debs(out / "cache" / "debs")
    with atomic_folder(raw) as tmp:  # only a complete sample ever sits at raw/
        counts = {
            "web pages": build_web(roots, tmp / "web", pages_per_language, seed),
            "jsonl documents": build_jsonl(roots, tmp / "jsonl"),
            "parquet rows": build_parquet(roots, tmp / "parquet"),
            "code files": build_code(tmp / "code"),
        }
        atomic_write(tmp / ".complete", orjson.dumps(counts))
    logger.info(f"sample: built {raw}: {counts} (python {sys.version.split()[0]})")
    return raw
