"""The clean stage as datatrove pipeline steps: one pipeline per source, all with the same route logic.

    reader -> size guard -> [trafilatura, for html] -> language router -> en / zh quality filters -> en / zh toxicity
           -> en / zh learned quality (a train-quality model, when set)
           -> code licence -> code quality (all route-gated) -> PII & secrets scrubber
           -> writer (clean/<route>/<source>_<rank>.jsonl.gz)

Where each output goes: :mod:`moss_data.corpus.layout`.
"""

from __future__ import annotations

import re
from pathlib import Path

from datatrove.pipeline.writers import JsonlWriter

from moss_data.corpus.code_reader import CodeRepoReader
from moss_data.corpus.config import CleanConfig, SourceConfig
from moss_data.corpus.extraction import AccountedTrafilatura
from moss_data.corpus.filters.chinese import ChineseQualityFilter
from moss_data.corpus.filters.code import CodeQualityFilter
from moss_data.corpus.filters.english import build_english_filters
from moss_data.corpus.filters.gate import RouteGate
from moss_data.corpus.filters.learned import LearnedQualityFilter
from moss_data.corpus.filters.licence import LicenceFilter
from moss_data.corpus.filters.toxicity import ChineseToxicityFilter, EnglishToxicityFilter
from moss_data.corpus.filters.size import DocumentSizeFilter
from moss_data.corpus.langid import LanguageRouter
from moss_data.corpus.layout import CleanLayout
from moss_data.corpus.pii import PIIScrubber
from moss_data.corpus.readers import SafeJsonlReader, SafeParquetReader, SafeWarcReader
from moss_data.io.atomic import keyed_name
from moss_data.io.documents import route_filename
from moss_data.plan import Job

# Bumped when the clean stage's outputs change for the same recipe (a reader or filter changed what it keeps): part
# of each clean job's key, so outputs made by older code are redone, not resumed.
CLEAN_VERSION = 3

READERS = {"warc": SafeWarcReader, "jsonl": SafeJsonlReader, "parquet": SafeParquetReader, "code": CodeRepoReader}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def build_reader(recipe: CleanConfig, source: SourceConfig, out: Path):
    common = dict(
        source=source.name,
        skip_log_folder=str(CleanLayout(out).skipped),
        glob_pattern=source.glob,
        limit=source.limit,
        text_key=source.text_key,
        id_key=source.id_key,
        default_metadata={"source": source.name},
    )
    if source.kind == "code":
        return CodeRepoReader(source.path, max_file_bytes=recipe.max_code_file_bytes, **common)
    if source.kind == "warc":
        return SafeWarcReader(source.path, max_record_bytes=recipe.max_doc_bytes,
                              max_replaced_share=recipe.max_replaced_share, **common)
    return READERS[source.kind](source.path, **common)


def build_pipeline(recipe: CleanConfig, source: SourceConfig, out: Path) -> list:
    """The steps of one source's clean pipeline, writing under ``out``."""

    def exclusions(step: str):
        if not recipe.keep_exclusions:
            return None
        return JsonlWriter(str(CleanLayout(out).excluded / source.name), output_filename=f"{_slug(step)}_${{rank}}.jsonl.gz")

    max_bytes = recipe.max_code_file_bytes if source.kind == "code" else recipe.max_doc_bytes
    steps: list = [build_reader(recipe, source, out), DocumentSizeFilter(max_bytes, exclusion_writer=exclusions("size"))]
    if source.content == "html":
        steps.append(AccountedTrafilatura(favour_precision=recipe.extraction.favour_precision,
                                          timeout=recipe.extraction.timeout_s, exclusion_writer=exclusions("extraction")))
    if source.kind != "code":
        steps.append(
            LanguageRouter(
                min_score=recipe.language_id.min_score,
                max_chars=recipe.language_id.max_chars,
                force_route=source.route,
            )
        )
        for f in build_english_filters(recipe.filters.en):
            steps.append(RouteGate("en", f, exclusion_writer=exclusions(f"en {f.name}")))
        if recipe.filters.zh.enabled:
            steps.append(RouteGate("zh", ChineseQualityFilter(recipe.filters.zh), exclusions("zh quality")))
        if recipe.filters.toxicity.enabled:
            tox = recipe.filters.toxicity
            steps.append(RouteGate("en", EnglishToxicityFilter(tox), exclusions("en toxicity")))
            steps.append(RouteGate("zh", ChineseToxicityFilter(tox), exclusions("zh toxicity")))
        # last of the route filters: the model reads only what the cheap rules kept (FineWeb-Edu's order)
        for route, learned in recipe.filters.learned_quality.items():
            if learned.model is not None:
                steps.append(RouteGate(route, LearnedQualityFilter(learned), exclusions(f"{route} learned quality")))
    if source.kind == "code" or source.route == "code":
        if recipe.filters.licence.permissive_only:
            steps.append(RouteGate("code", LicenceFilter(recipe.filters.licence), exclusions("code licence")))
        if recipe.filters.code.enabled:
            steps.append(RouteGate("code", CodeQualityFilter(recipe.filters.code), exclusions("code quality")))
    steps.append(PIIScrubber(recipe.pii))
    steps.append(JsonlWriter(str(CleanLayout(out).clean), output_filename=route_filename(source.name)))
    return steps


def clean_key(recipe: CleanConfig, source: SourceConfig) -> dict:
    """What the clean job of ``source`` is made from: the code version, the source, and every clean setting."""
    settings = recipe.model_dump(mode="json", include=set(CleanConfig.model_fields) - {"sources"})
    return {"version": CLEAN_VERSION, "source": source.model_dump(mode="json"), **settings}


def clean_logs(recipe: CleanConfig, source: SourceConfig) -> str:
    """The name of the clean job's logging folder under ``logs/`` (its key in it: another key, another folder)."""
    return keyed_name(source.name, clean_key(recipe, source))


def clean_plan(recipe: CleanConfig, out: Path, tasks: int) -> list[Job]:
    """The clean stage as jobs: one per source (named after it), each sharded over ``tasks`` tasks."""
    return [Job(source.name, build_pipeline(recipe, source, out), tasks) for source in recipe.sources]
