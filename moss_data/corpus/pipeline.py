"""Builds and runs the corpus pipeline of a recipe: one datatrove pipeline per source, all with the same route logic.

    reader -> size guard -> [trafilatura, for html] -> language router -> en / zh / code filters (route-gated)
           -> PII & secrets scrubber -> writer (clean/<route>/<source>_<rank>.jsonl.gz)

Output folder layout::

    clean/<route>/<source>_<rank>.jsonl.gz     kept documents, route in {en, zh, code, other}
    excluded/<source>/<step>_<rank>.jsonl.gz   every removed document, metadata.filter_reason says why
    skipped/<source>_<rank>.jsonl              records the readers could not turn into documents, with reasons
    logs/<source>/                             datatrove logs, per-task stats and completion markers (resume)
    report/                                    merged stats (stats.json), report.md, removals.png
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from datatrove.executor.base import PipelineExecutor
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.writers import JsonlWriter
from loguru import logger

from moss_data.corpus.code_reader import CodeRepoReader
from moss_data.corpus.config import CorpusRecipe, ExecutorConfig, SourceConfig
from moss_data.corpus.filters.chinese import ChineseQualityFilter
from moss_data.corpus.filters.code import CodeQualityFilter
from moss_data.corpus.filters.english import build_english_filters
from moss_data.corpus.filters.gate import RouteGate
from moss_data.corpus.filters.size import DocumentSizeFilter
from moss_data.corpus.langid import LanguageRouter, lid176_model_path
from moss_data.corpus.pii import PIIScrubber
from moss_data.corpus.readers import SafeJsonlReader, SafeParquetReader, SafeWarcReader

READERS = {"warc": SafeWarcReader, "jsonl": SafeJsonlReader, "parquet": SafeParquetReader, "code": CodeRepoReader}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def build_reader(recipe: CorpusRecipe, source: SourceConfig):
    out = recipe.output_dir
    common = dict(
        source=source.name,
        skip_log_folder=str(out / "skipped"),
        glob_pattern=source.glob,
        limit=source.limit,
        text_key=source.text_key,
        id_key=source.id_key,
        default_metadata={"source": source.name},
    )
    if source.kind == "code":
        return CodeRepoReader(source.path, max_file_bytes=recipe.max_code_file_bytes, **common)
    return READERS[source.kind](source.path, **common)


def build_pipeline(recipe: CorpusRecipe, source: SourceConfig) -> list:
    out = recipe.output_dir

    def exclusions(step: str):
        if not recipe.keep_exclusions:
            return None
        return JsonlWriter(str(out / "excluded" / source.name), output_filename=f"{_slug(step)}_${{rank}}.jsonl.gz")

    max_bytes = recipe.max_code_file_bytes if source.kind == "code" else recipe.max_doc_bytes
    steps: list = [build_reader(recipe, source), DocumentSizeFilter(max_bytes, exclusion_writer=exclusions("size"))]
    if source.content == "html":
        steps.append(
            Trafilatura(favour_precision=recipe.extraction.favour_precision, timeout=recipe.extraction.timeout_s)
        )
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
    if recipe.filters.code.enabled and (source.kind == "code" or source.route == "code"):
        steps.append(RouteGate("code", CodeQualityFilter(recipe.filters.code), exclusions("code quality")))
    steps.append(PIIScrubber(recipe.pii))
    steps.append(JsonlWriter(str(out / "clean"), output_filename=f"${{route}}/{source.name}_${{rank}}.jsonl.gz"))
    return steps


def build_executor(cfg: ExecutorConfig, pipeline: list, logging_dir: Path, job_name: str) -> PipelineExecutor:
    workers = cfg.workers if cfg.workers > 0 else min(cfg.tasks, os.cpu_count() or 1)
    if cfg.kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(pipeline, tasks=cfg.tasks, workers=workers, logging_dir=str(logging_dir))
    if cfg.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            pipeline,
            tasks=cfg.tasks,
            time=cfg.time,
            partition=cfg.partition,
            cpus_per_task=cfg.cpus_per_task,
            mem_per_cpu_gb=cfg.mem_per_cpu_gb,
            qos=cfg.qos,
            venv_path=cfg.venv_path,
            sbatch_args=cfg.sbatch_args or None,
            job_name=job_name,
            logging_dir=str(logging_dir),
        )
    try:
        from datatrove.executor.ray import RayPipelineExecutor
        import ray  # noqa: F401
    except ImportError as e:
        raise RuntimeError("executor.kind ray needs Ray: pip install -e '.[ray]'") from e
    return RayPipelineExecutor(
        pipeline,
        tasks=cfg.tasks,
        workers=workers,
        cpus_per_task=cfg.cpus_per_task,
        mem_per_cpu_gb=cfg.mem_per_cpu_gb,
        logging_dir=str(logging_dir),
    )


def run_corpus(recipe: CorpusRecipe) -> Path:
    """Runs (or resumes: completed tasks are skipped) every source, then writes the merged report. Returns its path."""
    from moss_data.corpus.report import write_report

    if any(s.kind != "code" for s in recipe.sources):
        lid176_model_path()  # fail before any task starts, with the install hint
    recipe.output_dir.mkdir(parents=True, exist_ok=True)
    for source in recipe.sources:
        if not Path(source.path).exists() and "://" not in source.path:
            raise FileNotFoundError(
                f"source {source.name!r}: {source.path} does not exist (for the sample corpus run `just sample`)"
            )
        logger.info(f"corpus: source {source.name} ({source.kind}, {source.content}) from {source.path}")
        executor = build_executor(
            recipe.executor,
            build_pipeline(recipe, source),
            recipe.output_dir / "logs" / source.name,
            job_name=f"{recipe.name}-{source.name}",
        )
        executor.run()
    if recipe.executor.kind == "slurm":
        logger.info(
            "corpus: jobs submitted to Slurm; once they finish, run `moss-data corpus RECIPE` again: completed "
            "tasks are skipped and the dedup, tokenize and mix stages run on their output"
        )
        return recipe.output_dir / "report"
    report = write_report(recipe)
    run_later_stages(recipe)
    return report


def run_later_stages(recipe: CorpusRecipe) -> None:
    """clean shards -> dedup -> token shards -> mix, each stage skipping work its manifest shows done."""
    from moss_data.data_report import write_data_report
    from moss_data.dedup.stage import run_dedup
    from moss_data.tokens.stage import run_mix, run_tokenize

    out = recipe.output_dir
    docs_dir = out / "clean"
    if recipe.dedup.enabled:
        run_dedup(out / "clean", out / "dedup", recipe.dedup)
        docs_dir = out / "dedup" / "kept"
    if recipe.tokenize.enabled:
        run_tokenize(docs_dir, out, recipe.tokenize)
        if recipe.mix.enabled:
            run_mix(out, recipe.mix)
    write_data_report(out)
