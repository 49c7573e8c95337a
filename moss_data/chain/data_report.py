"""The data report of a corpus run: what was kept, removed and mixed, as markdown with plots (polars + matplotlib).

``report/data_report.md`` with ``token_lengths.png`` (tokens per document, per route over all its shards),
``token_shares.png`` (available vs mixed tokens per route), ``removals_all.png`` (corpus-stage and dedup removals by
reason) and ``dup_clusters.png`` (duplicate cluster sizes).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from moss_data.chain.layout import ChainLayout  # noqa: E402
from moss_data.dedup.stage import manifest_path as dedup_manifest_path  # noqa: E402
from moss_data.io.atomic import atomic_write_figure, atomic_write_text  # noqa: E402
from moss_data.io.tokens import TokenCorpus  # noqa: E402
from moss_data.tables import markdown_table  # noqa: E402


def _save(fig, path: Path, alt: str) -> str:
    """Writes the figure and returns its markdown image line."""
    fig.tight_layout()
    atomic_write_figure(path, fig, dpi=100)
    plt.close(fig)
    return f"\n![{alt}]({path.name})\n"


def _removals(out: Path) -> pl.DataFrame:
    rows = []
    layout = ChainLayout(out)
    summary = layout.clean_summary
    if summary.exists():
        for r in json.loads(summary.read_text())["removals"]:
            rows.append({"stage": "clean", "route": r["route"], "reason": r["reason"], "documents": r["documents"]})
    manifest = dedup_manifest_path(layout.dedup)
    if manifest.exists():
        for r in json.loads(manifest.read_text())["counts"]:
            if r["outcome"] != "kept":
                rows.append({"stage": "dedup", "route": r["route"], "reason": r["outcome"], "documents": r["documents"]})
    schema = {"stage": pl.Utf8, "route": pl.Utf8, "reason": pl.Utf8, "documents": pl.Int64}
    return pl.DataFrame(rows, schema=schema).group_by("stage", "reason").agg(pl.col("documents").sum()).sort(
        "stage", "documents", "reason", descending=[False, True, False]  # ties by reason: the same bytes each run
    )


def write_data_report(out: Path) -> Path:
    report = ChainLayout(out).report
    report.mkdir(parents=True, exist_ok=True)
    md = ["# Data report\n"]

    corpus = TokenCorpus(out)
    routes = {r: corpus.open_route(r) for r in corpus.routes()}  # every complete shard of each route
    if routes:
        lengths = pl.DataFrame(
            {"route": [r for r, t in routes.items() for _ in range(len(t))],
             "tokens": np.concatenate([t.lengths() for t in routes.values()])}
        )
        stats = lengths.group_by("route").agg(
            documents=pl.len(), tokens=pl.col("tokens").sum(), median_tokens=pl.col("tokens").median(),
            p95_tokens=pl.col("tokens").quantile(0.95),
        ).join(pl.DataFrame({"route": list(routes), "shards": [len(t.shards) for t in routes.values()]}),
               on="route").sort("route")
        md.append("\n## Token shards\n\n" + markdown_table(stats))
        fig, ax = plt.subplots(figsize=(8, 4))
        bins = np.logspace(0, np.log10(max(2, lengths["tokens"].max())), 40)
        for route, t in routes.items():
            ax.hist(t.lengths(), bins=bins, histtype="step", label=route, linewidth=1.5)
        ax.set_xscale("log")
        ax.set(xlabel="tokens per document", ylabel="documents", title="document lengths per route")
        ax.legend()
        md.append(_save(fig, report / "token_lengths.png", "token lengths"))

    if corpus.mix_manifest_path.exists():
        mix = corpus.mix_manifest()
        routes = mix["routes"]
        table = pl.DataFrame(
            {"route": routes,
             "available_tokens": [mix["available_tokens"][r] for r in routes],
             "mixed_tokens": [mix["mixed_tokens"][r] for r in routes],
             "shards": [sum(1 for s in mix.get("shards", []) if s["route"] == r) for r in routes],
             "repeats": [mix["repeats"][r] for r in routes],
             "target_share": [round(mix["target_ratio"][r], 4) for r in routes],
             "achieved_share": [round(mix["achieved_ratio"][r], 4) for r in routes]}
        )
        md.append("\n## Mix\n\n" + markdown_table(table))
        fig, ax = plt.subplots(figsize=(7, 4))
        x = np.arange(len(routes))
        ax.bar(x - 0.2, table["available_tokens"], 0.4, label="available")
        ax.bar(x + 0.2, table["mixed_tokens"], 0.4, label="mixed")
        ax.set_xticks(x, routes)
        ax.set(ylabel="tokens", title="tokens per route: available vs mixed")
        ax.legend()
        md.append(_save(fig, report / "token_shares.png", "token shares"))

    removals = _removals(out)
    md.append("\n## Removals (corpus stage and dedup)\n\n" + markdown_table(removals))
    if not removals.is_empty():
        fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(removals) + 1)))
        labels = [f"{s} · {r}" for s, r in zip(removals["stage"], removals["reason"])]
        ax.barh(labels[::-1], removals["documents"].to_list()[::-1], color="#c44e52")
        ax.set(xlabel="documents", title="removed documents by stage and reason")
        md.append(_save(fig, report / "removals_all.png", "removals"))

    dedup_manifest = dedup_manifest_path(ChainLayout(out).dedup)
    if dedup_manifest.exists():
        sizes = json.loads(dedup_manifest.read_text())["cluster_sizes"]
        table = pl.DataFrame({"cluster_size": [int(k) for k in sizes], "clusters": list(sizes.values())}).sort("cluster_size")
        md.append("\n## Duplicate clusters (kept documents by the size of their cluster)\n\n" + markdown_table(table))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(table["cluster_size"].cast(pl.Utf8).to_list(), table["clusters"].to_list())
        ax.set_yscale("log")
        ax.set(xlabel="cluster size", ylabel="clusters", title="near/exact duplicate cluster sizes")
        md.append(_save(fig, report / "dup_clusters.png", "cluster sizes"))

    runs = ChainLayout(out).runs
    if runs.exists():  # what the run that wrote this report did with each job, and why
        jobs = pl.DataFrame(json.loads(runs.read_text())["jobs"], schema={"job": pl.Utf8, "stage": pl.Utf8,
                                                                          "tasks": pl.Int64, "what": pl.Utf8})
        md.append("\n## This run: each job kept, run or redone, and why\n\n" + markdown_table(jobs))

    path = report / "data_report.md"
    atomic_write_text(path, "".join(md))
    return path
