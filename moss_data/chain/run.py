"""The corpus chain: clean (one datatrove pipeline per source) -> dedup -> token shards -> mix -> reports.

Each stage reads the previous stage's shards and writes its own with a manifest, so a re-run skips done work.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from moss_data.chain.executors import build_executor
from moss_data.chain.layout import ChainLayout
from moss_data.chain.recipe import CorpusRecipe
from moss_data.chain.data_report import write_data_report
from moss_data.corpus.pipeline import build_pipeline
from moss_data.corpus.report import write_report
from moss_data.dedup.stage import run_dedup
from moss_data.text.langid import lid176_model_path
from moss_data.tokens.stage import run_mix, run_tokenize


def run_corpus(recipe: CorpusRecipe) -> Path:
    """Runs (or resumes: completed tasks are skipped) every source, then writes the merged report and runs the later
    stages. Returns the report folder."""
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
            build_pipeline(recipe, source, recipe.output_dir),
            ChainLayout(recipe.output_dir).logs(source.name),
            job_name=f"{recipe.name}-{source.name}",
        )
        executor.run()
    if recipe.executor.kind == "slurm":
        logger.info(
            "corpus: jobs submitted to Slurm; once they finish, run `moss-data corpus RECIPE` again: completed "
            "tasks are skipped and the dedup, tokenize and mix stages run on their output"
        )
        return ChainLayout(recipe.output_dir).report
    report = write_report(recipe, recipe.output_dir, recipe.name)
    run_later_stages(recipe)
    return report


def run_later_stages(recipe: CorpusRecipe) -> None:
    """clean shards -> dedup -> token shards -> mix, each stage skipping work its manifest shows done."""
    layout = ChainLayout(recipe.output_dir)
    docs_dir = layout.clean
    if recipe.dedup.enabled:
        run_dedup(layout.clean, layout.dedup, recipe.dedup)
        docs_dir = layout.dedup_kept
    if recipe.tokenize.enabled:
        run_tokenize(docs_dir, recipe.output_dir, recipe.tokenize)
        if recipe.mix.enabled:
            run_mix(recipe.output_dir, recipe.mix)
    write_data_report(recipe.output_dir)
