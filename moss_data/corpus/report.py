"""Merged stats and the corpus report.

datatrove's local executor writes ``stats.json`` with only the tasks of the latest invocation, so after a resume it
under-counts. We merge the per-task files (``logs/<source>/stats/<rank>.json``), which completed tasks keep across
runs, so the totals are the same whether a run went through at once or was resumed.

Outputs in ``report/``: ``stats.json`` (per source, per step, datatrove's stats format, merged over tasks),
``summary.json`` (the tables below as data), ``report.md`` (kept documents and characters per route and source,
removals by route, step and reason, reader skips by reason, PII replaced per kind, and examples of what the toxicity,
licence and code filters removed and of where PII was replaced) and ``removals.png``.

Examples never show PII: a PII example is the scrubbed text around the placeholder, read back from the clean shards.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import polars as pl
from datatrove.utils.stats import PipelineStats
from loguru import logger

from moss_data.corpus.config import CleanConfig
from moss_data.corpus.layout import CleanLayout
from moss_data.corpus.pii import PIIConfig, scrub
from moss_data.corpus.pipeline import clean_logs
from moss_data.io.atomic import atomic_write_figure, atomic_write_text
from moss_data.io.documents import SHARD_PATTERN, iter_documents
from moss_data.tables import markdown_table
from moss_data.text.langid import ROUTES

_TYPE_PREFIX = re.compile(r"^[^:]*-\s*[A-Z]+:\s*")
# Exclusion files (``excluded/<source>/<step slug>_<rank>.jsonl.gz``) of the filters whose removals get examples.
EXAMPLE_STEPS = ("en_toxicity", "zh_toxicity", "en_learned_quality", "zh_learned_quality", "code_licence", "code_quality")
EXAMPLES_PER_REASON = 3
EXAMPLE_SCAN_LIMIT = 20_000  # documents read per exclusion file at most
PII_PLACEHOLDER = re.compile(r"<(?:EMAIL|IP_ADDRESS|KEY|PHONE_NUMBER|ID_NUMBER|BANK_CARD)>")
SNIPPET_CHARS = 40


def merged_stats(logging_dir: Path) -> PipelineStats:
    """Sum of every task's stats file in a datatrove logging dir (across runs: resumed tasks are not re-counted)."""
    files = sorted((logging_dir / "stats").glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no task stats under {logging_dir}/stats: has this source been run?")
    total = PipelineStats.from_json(json.loads(files[0].read_text()))
    for f in files[1:]:
        total = total + PipelineStats.from_json(json.loads(f.read_text()))
    return total


def metric_total(value) -> float:
    return value["total"] if isinstance(value, dict) else value


def step_rows(source: str, stats: PipelineStats) -> list[dict]:
    """One row per (step, metric) with the step's route when it is route-gated."""
    rows = []
    for step in stats.stats:
        name = _TYPE_PREFIX.sub("", step.name)
        route = name.split(":", 1)[0] if name.split(":", 1)[0] in ROUTES else None
        for metric, value in step.stats.to_dict().items():
            rows.append({"source": source, "step": name, "route": route, "metric": metric, "value": metric_total(value)})
    return rows


def kept_documents(clean_dir: Path) -> pl.DataFrame:
    """Per route and source: documents and characters actually in the clean shards (read back, not trusted)."""
    counts: Counter = Counter()
    chars: Counter = Counter()
    for doc in iter_documents(clean_dir, SHARD_PATTERN):
        key = (doc["metadata"]["route"], doc["metadata"]["source"])
        counts[key] += 1
        chars[key] += len(doc["text"])
    return pl.DataFrame(
        [{"route": r, "source": s, "documents": n, "characters": chars[(r, s)]} for (r, s), n in sorted(counts.items())],
        schema={"route": pl.Utf8, "source": pl.Utf8, "documents": pl.Int64, "characters": pl.Int64},
    )


def _cell(text: str, limit: int = 100) -> str:
    """One line of text for a markdown table cell."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _removal_detail(doc: dict) -> str:
    """What a removed document was removed for, in a few words (toxicity: the worst sentence or the words found;
    licence and code: the path, language, licence and first line), PII-scrubbed: excluded documents were removed
    before the scrubber ran."""
    meta = doc["metadata"]
    if "toxicity" in meta:
        t = meta["toxicity"]
        if "offensive_sentences" in t:
            detail = (f"{t['offensive_sentences']}/{t['sentences']} offensive sentences, top {t['top_score']}: "
                      f"{t['example']}")
        else:
            detail = f"{t['offensive_words']} listed words ({t['per_1k_chars']}/1k chars): {t['example']}"
    elif "quality_score" in meta:
        detail = f"keep probability {meta['quality_score']}: {' '.join(doc.get('text', '')[:2 * SNIPPET_CHARS].split())}"
    elif meta.get("route") == "code":
        first = next((line.strip() for line in doc.get("text", "").splitlines() if line.strip()), "")
        detail = (f"{meta.get('repo', '')}/{meta.get('path', '')} ({meta.get('language', '?')}, licence "
                  f"{meta.get('license', '?')}): {first[:SNIPPET_CHARS]}")
    else:
        detail = doc.get("text", "")[: 2 * SNIPPET_CHARS]
    return scrub(detail, PIIConfig())[0]


def removal_examples(excluded_dir: Path, per_reason: int = EXAMPLES_PER_REASON) -> pl.DataFrame:
    """A few removed documents per (step, reason) of the toxicity, licence and code filters, from the exclusion
    output: document id and why (PII-scrubbed)."""
    seen: Counter = Counter()
    rows = []
    files = sorted(p for p in excluded_dir.glob("*/*.jsonl.gz") if p.name.startswith(EXAMPLE_STEPS)) \
        if excluded_dir.exists() else []
    for path in files:
        for i, doc in enumerate(iter_documents(path.parent, path.name)):
            if i >= EXAMPLE_SCAN_LIMIT:
                break
            meta = doc["metadata"]
            key = (meta.get("filter_step", ""), meta.get("filter_reason", ""))
            if seen[key] >= per_reason:
                continue
            seen[key] += 1
            rows.append({"step": key[0], "reason": key[1], "id": _cell(doc["id"], 60),
                         "detail": _cell(_removal_detail(doc), 140)})
    return pl.DataFrame(rows, schema={"step": pl.Utf8, "reason": pl.Utf8, "id": pl.Utf8, "detail": pl.Utf8}).sort(
        "step", "reason", "id")


def pii_examples(clean_dir: Path, per_kind: int = EXAMPLES_PER_REASON) -> pl.DataFrame:
    """A few kept documents per PII kind, with the scrubbed text around the first placeholder (never the PII)."""
    seen: Counter = Counter()
    rows = []
    for doc in iter_documents(clean_dir, SHARD_PATTERN):
        kinds = [k for k in (doc["metadata"].get("pii") or {}) if seen[k] < per_kind]
        if not kinds:
            continue
        m = PII_PLACEHOLDER.search(doc["text"])
        snippet = doc["text"][max(0, m.start() - SNIPPET_CHARS): m.end() + SNIPPET_CHARS] if m else ""
        for kind in kinds:
            seen[kind] += 1
            rows.append({"kind": kind, "id": _cell(doc["id"], 60), "count": int(doc["metadata"]["pii"][kind]),
                         "scrubbed_context": _cell(snippet, 2 * SNIPPET_CHARS + 20)})
    return pl.DataFrame(rows, schema={"kind": pl.Utf8, "id": pl.Utf8, "count": pl.Int64,
                                      "scrubbed_context": pl.Utf8}).sort("kind", "id")


def merged_stats_by_source(recipe: CleanConfig, out: Path) -> dict[str, PipelineStats]:
    """Each source's merged stats; sources not run yet are left out with a warning."""
    merged = {}
    for source in recipe.sources:
        logging_dir = CleanLayout(out).logs(clean_logs(recipe, source))
        if not (logging_dir / "stats").exists():
            logger.warning(f"report: source {source.name} has no stats yet, left out")
            continue
        merged[source.name] = merged_stats(logging_dir)
    return merged


def build_tables(out: Path, merged: dict[str, PipelineStats]) -> dict[str, pl.DataFrame]:
    rows = []
    for source, stats in merged.items():
        rows += step_rows(source, stats)
    steps = pl.DataFrame(
        rows, schema={"source": pl.Utf8, "step": pl.Utf8, "route": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64}
    )
    removals = (
        steps.filter(pl.col("metric").str.starts_with("dropped_"))
        .with_columns(reason=pl.col("metric").str.strip_prefix("dropped_"), route=pl.col("route").fill_null("(all)"))
        .group_by("route", "step", "reason")
        .agg(documents=pl.col("value").sum().cast(pl.Int64))
        .sort("route", "documents", "step", "reason", descending=[False, True, False, False])  # ties: stable bytes
    )
    extraction = (
        steps.filter(pl.col("metric").str.starts_with("dropped_extraction_"))
        .with_columns(reason=pl.col("metric").str.strip_prefix("dropped_"))
        .group_by("reason")
        .agg(documents=pl.col("value").sum().cast(pl.Int64))
        .sort("reason")
    )
    skips = (
        steps.filter(pl.col("metric").str.starts_with("skipped_"))
        .with_columns(reason=pl.col("metric").str.strip_prefix("skipped_"))
        .group_by("source", "reason")
        .agg(records=pl.col("value").sum().cast(pl.Int64))
        .sort("source", "reason")
    )
    routed = (
        steps.filter(pl.col("metric").str.starts_with("route_"))
        .with_columns(route=pl.col("metric").str.strip_prefix("route_"))
        .group_by("source", "route")
        .agg(documents=pl.col("value").sum().cast(pl.Int64))
        .sort("source", "route")
    )
    pii = (
        steps.filter(pl.col("step").str.contains("PII") & pl.col("metric").str.contains(r"^(pii_|secret_)"))
        .group_by("metric")
        .agg(count=pl.col("value").sum().cast(pl.Int64))
        .rename({"metric": "kind"})
        .sort("kind")
    )
    return {
        "kept": kept_documents(CleanLayout(out).clean),
        "routed": routed,
        "removals": removals,
        "extraction_failures": extraction,
        "reader_skips": skips,
        "pii": pii,
        "removal_examples": removal_examples(CleanLayout(out).excluded),
        "pii_examples": pii_examples(CleanLayout(out).clean),
        "steps": steps,
    }


def _plot_removals(removals: pl.DataFrame, kept: pl.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, max(3.0, 0.32 * len(removals) + 1.5)))
    by_route = kept.group_by("route").agg(pl.col("documents").sum()).sort("route")
    axes[0].bar(by_route["route"].to_list(), by_route["documents"].to_list(), color="#4c72b0")
    axes[0].set_title("kept documents per route")
    labels = [f"{r} · {reason}" for r, reason in zip(removals["route"], removals["reason"])]
    axes[1].barh(labels[::-1], removals["documents"].to_list()[::-1], color="#c44e52")
    axes[1].set_title("removed documents by route and reason")
    fig.tight_layout()
    atomic_write_figure(path, fig, dpi=110)
    plt.close(fig)


def write_report(recipe: CleanConfig, out: Path, name: str) -> Path:
    """The clean stage's report of run ``name`` whose output folder is ``out``; returns ``out/report``."""
    report_dir = CleanLayout(out).report
    report_dir.mkdir(parents=True, exist_ok=True)
    merged = merged_stats_by_source(recipe, out)
    stats_json = {source: json.loads(stats.to_json()) for source, stats in merged.items()}
    atomic_write_text(report_dir / "stats.json", json.dumps(stats_json, indent=2, ensure_ascii=False))

    tables = build_tables(out, merged)
    summary = {table: df.to_dicts() for table, df in tables.items() if table != "steps"}
    atomic_write_text(CleanLayout(out).summary, json.dumps(summary, indent=2, ensure_ascii=False))
    _plot_removals(tables["removals"], tables["kept"], report_dir / "removals.png")

    kept = tables["kept"]
    totals = kept.group_by("route").agg(pl.col("documents").sum(), pl.col("characters").sum()).sort("route")
    md = [f"# Corpus report: {name}\n", f"Output: `{out}`\n"]
    sections = [
        ("Kept documents per route", totals),
        ("Kept documents per route and source", kept),
        ("Language routing (documents reaching the router)", tables["routed"]),
        ("Removed documents by route, step and reason", tables["removals"]),
        ("Extraction failures", tables["extraction_failures"]),
        ("Reader skips (records that never became documents)", tables["reader_skips"]),
        ("PII and secrets replaced", tables["pii"]),
        ("Examples: toxicity, learned quality, licence and code removals", tables["removal_examples"]),
        ("Examples: PII replaced (scrubbed text around the placeholder)", tables["pii_examples"]),
    ]
    for title, df in sections:
        md.append(f"\n## {title}\n\n{markdown_table(df)}")
    md.append("\n![removals](removals.png)\n")
    atomic_write_text(report_dir / "report.md", "".join(md))
    logger.info(f"corpus report: {report_dir / 'report.md'}")
    return report_dir
