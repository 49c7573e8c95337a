"""Each filter family on real documents: what real text keeps, what real text made bad drops, and why."""

from __future__ import annotations

import base64
import sysconfig
from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
from datatrove.utils.word_tokenizers import load_word_tokenizer

from moss_data.text.scripts import CJK
from moss_data.corpus.filters.chinese import ChineseQualityFilter
from moss_data.corpus.filters.code import CodeQualityFilter
from moss_data.corpus.filters.english import EnglishFilters, RegexWordTokenizer, build_english_filters
from moss_data.corpus.filters.gate import RouteGate
from moss_data.corpus.filters.size import DocumentSizeFilter
from moss_data.io.documents import iter_documents

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def doc(text: str, **metadata) -> Document:
    return Document(text=text, id="t", metadata=metadata)


def run_chain(filters, d: Document):
    """The first (filter, reason) that drops ``d``, or None if every filter keeps it."""
    for f in filters:
        result = f.filter(d)
        if result is not True:
            return f.name, result[1] if isinstance(result, tuple) else None
    return None


@pytest.fixture(scope="module")
def english_docs(sample_run) -> list[dict]:
    out = sample_run.output_dir
    docs = [d for d in iter_documents(out / "clean" / "en")]
    docs += [d for d in iter_documents(out / "excluded") if d["metadata"].get("route") == "en"]
    assert len(docs) > 100
    return docs


@pytest.fixture(scope="module")
def kept_english(sample_run) -> list[str]:
    texts = [d["text"] for d in iter_documents(sample_run.output_dir / "clean" / "en") if len(d["text"]) > 1500]
    assert len(texts) >= 5
    return texts


# ---------------------------------------------------------------- English


def test_regex_tokenizer_matches_spacy_decisions(english_docs):
    """Our fast tokenizer must not change what Gopher decides compared with datatrove's spaCy default."""
    ours, spacy = RegexWordTokenizer(), load_word_tokenizer("en")
    for cls in (GopherQualityFilter, GopherRepetitionFilter):
        a, b = cls(language=ours), cls(language=spacy)
        agree = sum((a.filter(doc(d["text"])) is True) == (b.filter(doc(d["text"])) is True) for d in english_docs)
        assert agree / len(english_docs) >= 0.95, (cls.__name__, agree, len(english_docs))


def test_english_chain_keeps_real_pages(kept_english):
    chain = build_english_filters(EnglishFilters())
    assert [run_chain(chain, doc(t)) for t in kept_english] == [None] * len(kept_english)


def test_english_chain_drops_real_text_made_bad(kept_english):
    chain = build_english_filters(EnglishFilters())
    text = kept_english[0]
    first_para = max(text.split("\n"), key=len)
    repeated = "\n".join([first_para] * 30)
    assert run_chain(chain, doc(repeated))[0].startswith("👯 Gopher Repetition")
    short = " ".join(text.split()[:25])
    assert run_chain(chain, doc(short)) is not None
    # the words of a real page without sentences or lines: a keyword dump
    words = [w.strip(".,;:!?") for w in text.split()]
    assert run_chain(chain, doc(" ".join(words))) is not None


def test_english_config_switches_filters_off():
    cfg = EnglishFilters.model_validate({"c4": {"enabled": False}, "fineweb": {"enabled": False}})
    names = [f.name for f in build_english_filters(cfg)]
    assert len(names) == 2 and not any("C4" in n or "FineWeb" in n for n in names)


# ---------------------------------------------------------------- Chinese


@pytest.fixture(scope="module")
def kept_chinese(sample_run) -> list[str]:
    texts = [d["text"] for d in iter_documents(sample_run.output_dir / "clean" / "zh")]
    assert len(texts) > 100
    return texts


def test_chinese_filter_keeps_real_chinese_that_datatrove_rejects(kept_chinese):
    """The DESIGN trap: datatrove's zh tokenizer does not segment, so Gopher rejects real Chinese prose."""
    ours = ChineseQualityFilter()
    datatrove_gopher = GopherQualityFilter(language="zh")
    long_docs = [t for t in kept_chinese if len(t) > 500]
    assert len(long_docs) >= 20
    assert all(ours.filter(doc(t)) is True for t in long_docs)
    rejected = sum(datatrove_gopher.filter(doc(t)) is not True for t in long_docs)
    assert rejected / len(long_docs) >= 0.9


def test_chinese_filter_drops_real_text_made_bad(kept_chinese):
    f = ChineseQualityFilter()
    text = max(kept_chinese, key=len)
    line = max(text.splitlines(), key=lambda ln: len(CJK.findall(ln)))
    assert f.filter(doc("\n".join([line] * 40)))[1] in {"zh_dup_line_frac", "zh_dup_line_char_frac"}
    assert f.filter(doc(line[:30]))[1] == "zh_too_short"
    code = (STDLIB / "json" / "decoder.py").read_text()
    assert f.filter(doc(code + "\n" + line))[1] in {"zh_low_cjk_ratio", "zh_too_short"}
    # a menu-like list of real phrases: no function characters, no sentence ends
    items = [chunk for chunk in text.replace("，", "\n").replace("。", "\n").splitlines() if 2 <= len(chunk) <= 6]
    menu = "\n".join(ch for ch in items if not set(ch) & set("的了是在和有我不这也就"))[:3000]
    assert f.filter(doc(menu)) is not True


def test_fortunes_poems_survive(sample_run):
    kept = [d for d in iter_documents(sample_run.output_dir / "clean" / "zh") if d["metadata"]["source"] == "fortunes-zh"]
    assert len(kept) >= 50  # classical poems are Chinese text, not noise


# ---------------------------------------------------------------- code


def test_code_filter_keeps_real_library_code():
    f = CodeQualityFilter()
    files = sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py"))
    assert len(files) > 20
    dropped = [(p.name, f.filter(doc(p.read_text(), language="Python", path=p.name))) for p in files]
    assert [d for d in dropped if d[1] is not True] == []


@pytest.mark.parametrize(
    "relpath, reason",
    [
        ("pydoc_data/topics.py", "code_autogenerated"),  # "Autogenerated by Sphinx"
        ("keyword.py", "code_autogenerated"),  # "This file is automatically generated"
        ("encodings/cp1252.py", "code_autogenerated"),  # "generated from ... with gencodec.py"
    ],
)
def test_code_filter_drops_real_generated_files(relpath, reason):
    text = (STDLIB / relpath).read_text()
    assert CodeQualityFilter().filter(doc(text, language="Python", path=relpath)) == (False, reason)


def test_code_filter_minified_encoded_and_data_files():
    f = CodeQualityFilter()
    real = (STDLIB / "json" / "encoder.py").read_text()
    minified = ";".join(line.strip() for line in real.splitlines() if line.strip())
    assert f.filter(doc(minified, language="Python", path="encoder.py"))[1] == "code_minified"
    blob = base64.b64encode((STDLIB / "json" / "__init__.py").read_bytes() * 2).decode()
    embedded = real + f'\n\nPAYLOAD = "{blob[:900]}"\nPAYLOAD2 = "{blob[900:1800]}"\n'
    assert f.filter(doc(embedded, language="Python", path="encoder.py"))[1] == "code_encoded_data"
    big_json = '{"items": [' + ", ".join(f'{{"id": {i}, "name": "item {i}"}}' for i in range(400)) + "]}"
    assert f.filter(doc(big_json, language="JSON", path="data.json"))[1] == "code_data_file_size"
    assert f.filter(doc('{"a": 1, "b": [1, 2, 3], "name": "a small config file"}', language="JSON")) is True


def test_code_repo_reader_metadata(sample_run):
    code = list(iter_documents(sample_run.output_dir / "clean" / "code"))
    assert len(code) > 100
    by_repo = {d["metadata"]["repo"]: d["metadata"]["license"] for d in code}
    assert by_repo == {"cpython-stdlib": "PSF-2.0", "pyyaml": "MIT"}
    sample = next(d for d in code if d["metadata"]["path"] == "json/decoder.py")
    assert sample["metadata"]["language"] == "Python"
    assert sample["metadata"]["size"] == len((STDLIB / "json" / "decoder.py").read_bytes())


# ---------------------------------------------------------------- gate and size guard


def test_route_gate_filters_only_its_route_and_survives_errors():
    class Exploding(GopherQualityFilter):
        name = "exploding"

        def filter(self, d):
            if "boom" in d.text:
                raise ValueError("bad document")
            return super().filter(d)

    gate = RouteGate("en", Exploding(language=RegexWordTokenizer()))
    docs = [doc("too short", route="en"), doc("too short", route="zh"), doc("boom", route="en")]
    out = list(gate.run(iter(docs)))
    assert [d.metadata["route"] for d in out] == ["zh"]
    stats = gate.stats.stats.to_dict()
    assert stats["total"] == 2 and stats["dropped_filter_error"] == 1 and stats["dropped_gopher_short_doc"] == 1


def test_size_guard():
    f = DocumentSizeFilter(max_bytes=1000)
    assert f.filter(doc("字" * 400)) == (False, "too_large")  # 400 chars but 1,200 UTF-8 bytes
    assert f.filter(doc("a" * 999)) is True
    assert f.filter(doc(" \n\t ")) == (False, "empty")
