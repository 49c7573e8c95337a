"""The dedup stage's recipe section (``dedup:`` in a corpus recipe)."""

from __future__ import annotations

from pydantic import Field

from moss_data.recipe import StrictModel


class DecontaminationConfig(StrictModel):
    eval_sets: list[str] = Field(default_factory=list, description="JSONL (a 'text' or 'prompt' field per line: "
                                     "data/eval_sets/*.jsonl from `moss-data eval-sets`) or .txt files")
    ngram: int = Field(13, description="n-gram length in tokens (CJK characters count as tokens)")
    min_overlap: int = Field(1, description="documents sharing at least this many n-grams with an eval set go")


class DedupConfig(StrictModel):
    enabled: bool = True
    exact: bool = True
    url: bool = True
    near: bool = True
    scope: str = Field("route", pattern="^(route|text)$", description="route: each route alone; text: en+zh+other together")
    threshold: float = Field(0.8, gt=0, le=1)
    shingle_size: int = Field(5, ge=1, le=10)
    bands: int = 24
    rows: int = 5
    seed: int = 42
    max_bucket: int = Field(1000, ge=2, description="an LSH bucket with more members pairs each with its first only")
    verify: str = Field("exact", pattern="^(exact|signature)$", description="exact: shingle Jaccard; signature: estimate")
    decontaminate: DecontaminationConfig = DecontaminationConfig()
