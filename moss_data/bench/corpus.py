"""`just bench-corpus`: throughput of the corpus engine's pieces against datatrove's defaults, on the sample corpus.

Single-process figures (MB/s per core of input text) for: the English Gopher filters with our word tokenizer vs
datatrove's spaCy default (and how often their decisions agree), language routing, and the Chinese filter vs
datatrove's Gopher filter with its ``zh`` tokenizer (and what share of real Chinese each keeps). Then the whole
corpus stage on the sample recipe, wall clock. Writes ``<out>/corpus.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
from datatrove.utils.word_tokenizers import load_word_tokenizer
from tqdm import tqdm

from moss_data.chain.recipe import CorpusRecipe
from moss_data.corpus.filters.chinese import ChineseQualityFilter
from moss_data.corpus.layout import CleanLayout
from moss_data.corpus.filters.english import RegexWordTokenizer
from moss_data.text.langid import LanguageIdentifier
from moss_data.chain.run import run_corpus
from moss_data.corpus.sample import build_sample_corpus
from moss_data.io.documents import iter_documents
from moss_data.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


def _mb(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def _time(fn, texts: list[str], label: str) -> tuple[float, list]:
    fn(texts[0])  # warm-up: model and tokenizer loading is not throughput
    start = time.perf_counter()
    results = [fn(t) for t in tqdm(texts, desc=label, unit="doc", leave=False)]
    return time.perf_counter() - start, results


def _row(what: str, baseline: str, texts: list[str], t_base: float | None, t_ours: float, note: str = "") -> dict:
    mb = _mb(texts)
    return {
        "what": what, "baseline": baseline, "docs": len(texts), "MB": round(mb, 2),
        "baseline_MB_s": round(mb / t_base, 2) if t_base else None, "ours_MB_s": round(mb / t_ours, 2),
        "speedup": round(t_base / t_ours, 1) if t_base else None, "note": note,
    }


def _gopher(tokenizer):
    filters = [GopherRepetitionFilter(language=tokenizer), GopherQualityFilter(language=tokenizer)]

    def run(text: str) -> bool:
        doc = Document(text=text, id="b")
        return all(f.filter(doc) is True for f in filters)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/bench"))
    parser.add_argument("--sample", type=Path, default=Path("data/sample"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    build_sample_corpus(args.sample)

    # One run of the whole corpus stage gives the routed documents the pieces are timed on.
    recipe = load_recipe(REPO / "recipes/corpus/sample.yaml", CorpusRecipe)
    for source in recipe.sources:
        source.path = str(args.sample / "raw" / Path(source.path).relative_to("data/sample/raw"))
    recipe.output_dir = args.out / "corpus_run"
    shutil.rmtree(recipe.output_dir, ignore_errors=True)
    start = time.perf_counter()
    run_corpus(recipe)
    stage_s = time.perf_counter() - start
    layout = CleanLayout(recipe.output_dir)
    docs = list(iter_documents(layout.clean)) + list(iter_documents(layout.excluded))
    en = [d["text"] for d in docs if d["metadata"].get("route") == "en"]
    zh = [d["text"] for d in docs if d["metadata"].get("route") == "zh"]
    web = [d["text"] for d in docs if d["metadata"].get("route") in ("en", "zh", "other")]

    spacy_tok, ours_tok = load_word_tokenizer("en"), RegexWordTokenizer()
    t_spacy_tok, _ = _time(spacy_tok.word_tokenize, en, "tokenize/spaCy")
    t_ours_tok, _ = _time(ours_tok.word_tokenize, en, "tokenize/regex")
    t_spacy, spacy_keep = _time(_gopher(spacy_tok), en, "gopher/spaCy")
    t_ours, ours_keep = _time(_gopher(ours_tok), en, "gopher/regex")
    agree = sum(a == b for a, b in zip(spacy_keep, ours_keep)) / len(en)
    t_lid, _ = _time(LanguageIdentifier().classify, web, "lid.176")
    dt_zh, ours_zh = GopherQualityFilter(language="zh"), ChineseQualityFilter()
    t_dt, dt_keep = _time(lambda t: dt_zh.filter(Document(text=t, id="b")) is True, zh, "gopher/zh")
    t_zh, zh_keep = _time(lambda t: ours_zh.filter(Document(text=t, id="b")) is True, zh, "chinese filter")
    rows = [
        _row("English word tokenization alone", "datatrove default (spaCy)", en, t_spacy_tok, t_ours_tok),
        _row("English Gopher quality+repetition", "datatrove default (spaCy tokenizer)", en, t_spacy, t_ours,
             f"same decision on {agree:.1%} of documents"),
        _row("language routing (lid.176)", "-", web, None, t_lid),
        _row("Chinese quality filter", "datatrove Gopher quality, zh tokenizer", zh, t_dt, t_zh,
             f"keeps {sum(zh_keep) / len(zh):.0%} of real zh docs; datatrove keeps {sum(dt_keep) / len(zh):.0%}"),
    ]
    raw_mb = sum(p.stat().st_size for p in (args.sample / "raw").rglob("*") if p.is_file()) / 1e6
    rows.append(
        {"what": "whole sample recipe: clean, dedup, tokenize, mix (2 tasks)", "baseline": "-", "docs": len(docs),
         "MB": round(raw_mb, 2), "baseline_MB_s": None, "ours_MB_s": round(raw_mb / stage_s, 2), "speedup": None,
         "note": f"{stage_s:.1f} s wall clock, raw input (compressed) MB"}
    )
    (args.out / "corpus.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    cols = ["what", "baseline", "docs", "MB", "baseline_MB_s", "ours_MB_s", "speedup", "note"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
