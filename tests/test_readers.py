"""Input formats beyond the sample corpus: WET conversion records, zstd JSONL, a corrupt parquet file."""

from __future__ import annotations

import io
import sysconfig
from pathlib import Path

import orjson
import zstandard
from warcio.warcwriter import WARCWriter

from moss_data.corpus.readers import SafeJsonlReader, SafeParquetReader, SafeWarcReader

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def real_paragraphs(n: int) -> list[str]:
    """English prose paragraphs from this interpreter's license file (the history of the software)."""
    text = (STDLIB / "LICENSE.txt").read_text()
    paras = [" ".join(p.split()) for p in text.split("\n\n") if len(p) > 300]
    assert len(paras) >= n
    return paras[:n]


def test_wet_conversion_records_are_read_as_text(tmp_path):
    paras = real_paragraphs(3)
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for i, p in enumerate(paras):
        record = writer.create_warc_record(
            f"https://example.org/{i}",
            "conversion",
            payload=io.BytesIO(p.encode()),
            warc_headers_dict={"WARC-Identified-Payload-Type": "text/plain"},
            warc_content_type="text/plain",
        )
        writer.write_record(record)
    (tmp_path / "crawl.warc.wet.gz").write_bytes(buf.getvalue())
    reader = SafeWarcReader(str(tmp_path), source="wet")
    docs = list(reader.run())
    assert [d.text for d in docs] == paras
    assert [d.metadata["url"] for d in docs] == [f"https://example.org/{i}" for i in range(3)]


def test_zstd_jsonl(tmp_path):
    paras = real_paragraphs(2)
    raw = b"".join(orjson.dumps({"id": str(i), "text": p}) + b"\n" for i, p in enumerate(paras))
    (tmp_path / "part.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    docs = list(SafeJsonlReader(str(tmp_path), source="z").run())
    assert [d.text for d in docs] == paras


def test_corrupt_parquet_is_a_counted_skip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paras = real_paragraphs(2)
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist([{"id": "a", "text": paras[0]}, {"id": "b", "text": ""}]), tmp_path / "in/a.parquet")
    (tmp_path / "in/b.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    reader = SafeParquetReader(str(tmp_path / "in"), source="pq", skip_log_folder=str(tmp_path / "skips"))
    docs = list(reader.run())
    assert [d.id for d in docs] == ["a"]
    stats = reader.stats.stats.to_dict()
    assert stats["skipped_empty"] == 1 and stats["skipped_corrupt_parquet"] == 1
    log = [orjson.loads(line) for line in (tmp_path / "skips" / "pq_00000.jsonl").read_bytes().splitlines()]
    assert [e["reason"] for e in log] == ["empty", "corrupt_parquet"]


def test_iter_lines_across_block_boundaries():
    from moss_data.corpus.readers import iter_lines

    cases = {
        b"a\nbb\n\nccc": [b"a", b"bb", b"", b"ccc"],
        b"a\n": [b"a"],
        b"": [],
        b"\n\n": [b"", b""],
        b"x" * 10 + b"\ny": [b"x" * 10, b"y"],
    }
    for data, expected in cases.items():
        for block in (1, 3, 4, 64):
            assert list(iter_lines(io.BytesIO(data), block)) == expected, (data, block)


def test_router_ignores_an_untrusted_route_field():
    """A JSONL field called "route" names the output folder: a hostile value must not reach the writer."""
    from datatrove.data import Document

    from moss_data.corpus.langid import LanguageRouter

    paras = real_paragraphs(2)
    docs = [Document(text=paras[0], id="a", metadata={"route": "../../etc"}),
            Document(text=paras[1], id="b", metadata={"route": "code"})]
    router = LanguageRouter()
    out = list(router.run(iter(docs)))
    assert [d.metadata["route"] for d in out] == ["en", "code"]
    assert out[0].metadata["input_route"] == "../../etc"
    assert router.stats.stats.to_dict()["route_preset_ignored"] == 1


def test_source_route_forces_code_for_parquet_code(tmp_path):
    """Code datasets often ship as parquet: `route: code` skips LID and applies the code filters."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from moss_data.chain.recipe import CorpusRecipe
    from moss_data.chain.run import run_corpus
    from moss_data.io.documents import iter_documents

    rows = [
        {"id": "decoder", "text": (STDLIB / "json" / "decoder.py").read_text(), "path": "json/decoder.py", "route": "../x"},
        {"id": "keyword", "text": (STDLIB / "keyword.py").read_text(), "path": "keyword.py"},
    ]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in" / "code.parquet")
    recipe = CorpusRecipe.model_validate(
        {"name": "pqcode", "output_dir": str(tmp_path / "out"), "executor": {"tasks": 1},
         "sources": [{"name": "stack", "kind": "parquet", "path": str(tmp_path / "in"), "route": "code"}]}
    )
    run_corpus(recipe)
    kept = list(iter_documents(tmp_path / "out" / "clean"))
    assert [(d["id"], d["metadata"]["route"]) for d in kept] == [("decoder", "code")]
    excluded = list(iter_documents(tmp_path / "out" / "excluded"))
    assert [(d["id"], d["metadata"]["filter_reason"]) for d in excluded] == [("keyword", "code_autogenerated")]


def test_warc_non_html_records_are_counted_not_called_truncated(tmp_path):
    from warcio.statusandheaders import StatusAndHeaders

    paras = real_paragraphs(1)
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    png = (STDLIB / "LICENSE.txt").read_bytes()[:2000]  # any payload: what matters is its declared type
    for uri, ctype, payload in (
        ("https://example.org/logo.png", "image/png", png),
        ("https://example.org/page", "text/html", f"<html><body><p>{paras[0]}</p></body></html>".encode()),
    ):
        headers = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(
            uri, "response", payload=io.BytesIO(payload), http_headers=headers,
            warc_headers_dict={"WARC-Identified-Payload-Type": ctype}))
    (tmp_path / "mixed.warc").write_bytes(buf.getvalue())
    reader = SafeWarcReader(str(tmp_path), source="w")
    docs = list(reader.run())
    assert [d.metadata["url"] for d in docs] == ["https://example.org/page"]
    stats = reader.stats.stats.to_dict()
    assert stats["skipped_not_html"] == 1 and "skipped_truncated_warc" not in stats  # a counted, logged skip
