"""Markdown tables from polars frames: one way for every report (corpus, data report, benchmarks)."""

from __future__ import annotations

import polars as pl


def markdown_table(df: pl.DataFrame) -> str:
    if df.is_empty():
        return "_none_\n"
    header = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in df.iter_rows())
    return header + body
