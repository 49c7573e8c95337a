"""Every bad-input case is a counted, logged skip; the run finishes and the good records around it are kept."""

from __future__ import annotations

import gzip
import io
import sysconfig
from pathlib import Path

import orjson
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from moss_data.chain.recipe import CorpusRecipe
from moss_data.chain.run import run_corpus
from moss_data.corpus.layout import CleanLayout
from moss_data.corpus.pipeline import clean_logs
from moss_data.corpus.report import merged_stats
from moss_data.io.documents import iter_documents

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def warc_bytes(pages: list[tuple[str, str]], gzip_records: bool) -> bytes:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gzip_records)
    for uri, html in pages:
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        record = writer.create_warc_record(
            uri,
            "response",
            payload=io.BytesIO(html.encode()),
            http_headers=headers,
            warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"},
        )
        writer.write_record(record)
    return buf.getvalue()


def html_page(text: str) -> str:
    paragraphs = "".join(f"<p>{p}</p>" for p in text.split("\n") if p.strip())
    return f"<html><head><title>t</title></head><body><nav>Home | About</nav><article>{paragraphs}</article></body></html>"


@pytest.fixture(scope="module")
def real_texts(sample_run) -> dict[str, list[str]]:
    clean = sample_run.output_dir / "clean"
    en = [d["text"] for d in iter_documents(clean / "en") if 2000 < len(d["text"]) < 20000]
    zh = [d["text"] for d in iter_documents(clean / "zh") if 1000 < len(d["text"]) < 20000]
    assert len(en) >= 6 and len(zh) >= 6
    return {"en": en, "zh": zh}


@pytest.fixture(scope="module")
def bad_run(real_texts, tmp_path_factory) -> CorpusRecipe:
    root = tmp_path_factory.mktemp("bad_input")
    en, zh = real_texts["en"], real_texts["zh"]

    # JSONL: good, invalid UTF-8, not JSON, a JSON array, empty text, a number as text, good again
    (root / "jsonl").mkdir()
    lines = [
        orjson.dumps({"id": "good-1", "text": en[0]}),
        b'{"id": "bad-utf8", "text": "caf\xe9 \xff\xfe"}',
        b'{"id": "truncated json", "text": "no closing',
        b'["a", "list"]',
        orjson.dumps({"id": "empty", "text": "   "}),
        orjson.dumps({"id": "number", "text": 42}),
        orjson.dumps({"id": "good-2", "text": zh[0]}),
    ]
    (root / "jsonl" / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    # a gzip stream cut short: the records before the cut are kept
    whole = gzip.compress(b"".join(orjson.dumps({"id": f"gz-{i}", "text": t}) + b"\n" for i, t in enumerate(en[1:5])))
    (root / "jsonl" / "cut.jsonl.gz").write_bytes(whole[: int(len(whole) * 0.8)])
    # a 50 MB document between two good ones
    huge = (en[0] + "\n") * (50_000_000 // len(en[0]) + 1)
    with open(root / "jsonl" / "huge.jsonl", "wb") as f:
        f.write(orjson.dumps({"id": "before-huge", "text": zh[1]}) + b"\n")
        f.write(orjson.dumps({"id": "huge", "text": huge}) + b"\n")
        f.write(orjson.dumps({"id": "after-huge", "text": zh[2]}) + b"\n")

    # WARC: an uncompressed file whose last record is cut, and a gzip one cut in the middle
    (root / "warc").mkdir()
    pages = [(f"https://example.net/{i}", html_page(t)) for i, t in enumerate(en[1:4] + zh[3:5])]
    plain = warc_bytes(pages, gzip_records=False)
    (root / "warc" / "cut-record.warc").write_bytes(plain[:-400])
    gz = warc_bytes(pages, gzip_records=True)
    (root / "warc" / "cut-stream.warc.gz").write_bytes(gz[: len(gz) // 2] + b"\x00\x13garbage" * 40)

    # code: one good file, and each kind of bad file
    repo = root / "code" / "repo"
    repo.mkdir(parents=True)
    (repo / "good.py").write_text((STDLIB / "json" / "decoder.py").read_text())
    pyc = next((STDLIB / "json" / "__pycache__").glob("*.pyc"), None)
    (repo / "binary.py").write_bytes(pyc.read_bytes() if pyc else b"\x00\x01binary")
    (repo / "latin1.py").write_bytes("# auteur: Ren\xe9\nx = 1\n".encode("latin-1"))
    (repo / "empty.py").write_text("")
    (repo / "big.py").write_text((STDLIB / "pydoc_data" / "topics.py").read_text())  # ~700 KB
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    recipe = CorpusRecipe.model_validate(
        {
            "name": "bad",
            "output_dir": str(root / "out"),
            "sources": [
                {"name": "jsonl", "kind": "jsonl", "path": str(root / "jsonl")},
                {"name": "warc", "kind": "warc", "path": str(root / "warc")},
                {"name": "code", "kind": "code", "path": str(root / "code")},
            ],
            "executor": {"tasks": 1, "workers": 1},
            "max_code_file_bytes": 300_000,
        }
    )
    run_corpus(recipe)
    return recipe


def reader_stats(recipe: CorpusRecipe, source: str) -> dict:
    layout = CleanLayout(recipe.output_dir)
    stats = merged_stats(layout.logs(clean_logs(recipe, next(s for s in recipe.sources if s.name == source))))
    return {k: (v["total"] if isinstance(v, dict) else v) for k, v in stats.stats[0].stats.to_dict().items()}


def kept_ids(recipe: CorpusRecipe) -> set[str]:
    return {d["id"] for d in iter_documents(recipe.output_dir / "clean")}


def test_jsonl_bad_lines_are_counted_and_good_ones_kept(bad_run):
    s = reader_stats(bad_run, "jsonl")
    assert s["skipped_invalid_utf8"] == 1
    assert s["skipped_bad_json"] == 2  # the cut line and the number-as-text
    assert s["skipped_not_an_object"] == 1
    assert s["skipped_empty"] == 1
    assert {"good-1", "good-2"} <= kept_ids(bad_run)


def test_corrupt_gzip_keeps_records_before_the_cut(bad_run):
    s = reader_stats(bad_run, "jsonl")
    assert s["skipped_corrupt_compression"] == 1
    gz_ids = {i for i in kept_ids(bad_run) if i.startswith("gz-")}
    excluded = {d["id"] for d in iter_documents(bad_run.output_dir / "excluded") if d["id"].startswith("gz-")}
    assert 1 <= len(gz_ids | excluded) < 4  # some records were read, the cut one was not


def test_huge_document_is_excluded_with_reason_and_neighbours_kept(bad_run):
    excluded = {d["id"]: d["metadata"] for d in iter_documents(bad_run.output_dir / "excluded" / "jsonl")}
    assert excluded["huge"]["filter_reason"] == "too_large"
    assert excluded["huge"]["original_bytes"] >= 50_000_000
    assert {"before-huge", "after-huge"} <= kept_ids(bad_run)


def test_truncated_warc_records_are_skipped_and_earlier_ones_kept(bad_run):
    s = reader_stats(bad_run, "warc")
    assert s["skipped_truncated_warc"] >= 1
    assert s["skipped_truncated_warc"] + s.get("skipped_corrupt_compression", 0) == 2  # one per broken file
    docs = list(iter_documents(bad_run.output_dir / "clean")) + list(iter_documents(bad_run.output_dir / "excluded"))
    from_warc = [d["metadata"]["file_path"].rsplit("/", 1)[1] for d in docs if d["metadata"]["source"] == "warc"]
    # the uncompressed file gives the 4 records before the cut one, the gzip one the 2 complete members
    assert sorted(from_warc) == ["cut-record.warc"] * 4 + ["cut-stream.warc.gz"] * 2


def test_code_folder_bad_files(bad_run):
    s = reader_stats(bad_run, "code")
    assert s["skipped_binary"] == 1
    assert s["skipped_invalid_utf8"] == 1
    assert s["skipped_empty"] == 1
    assert s["skipped_too_large"] == 1
    assert s["skipped_not_code"] == 1
    code = [d for d in iter_documents(bad_run.output_dir / "clean" / "code")]
    assert [d["metadata"]["path"] for d in code] == ["good.py"]


def test_skip_log_says_what_and_why(bad_run):
    entries = [
        orjson.loads(line)
        for f in sorted((bad_run.output_dir / "skipped").glob("*.jsonl"))
        for line in f.read_bytes().splitlines()
    ]
    reasons = {(e["source"], e["reason"]) for e in entries}
    assert ("jsonl", "invalid_utf8") in reasons and ("code", "binary") in reasons and ("warc", "truncated_warc") in reasons
    assert all(e["path"] for e in entries)


def test_report_lists_the_skips(bad_run):
    report = (bad_run.output_dir / "report" / "report.md").read_text()
    for reason in ("invalid_utf8", "bad_json", "corrupt_compression", "truncated_warc", "binary", "too_large"):
        assert reason in report
