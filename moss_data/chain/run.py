"""The corpus chain: clean (one job per source) -> dedup -> tokenize -> mix -> reports, every job a datatrove pipeline
on the recipe's executor.

- ``local`` and ``ray``: the jobs run here one after the other; a job with a failed task stops the chain with the
  job's name, the failed ranks and where their logs are (nothing downstream runs on incomplete input).
- ``slurm``: one call submits the whole chain as Slurm array jobs chained with ``--dependency=afterok`` and returns
  the job ids (also saved in ``chain.json``); a job whose upstream failed is cancelled by Slurm
  (``--kill-on-invalid-dep=yes``), never left pending. ``moss-data corpus-status`` says where a chain stands.

Re-running resumes: datatrove skips every task whose completion marker exists. Jobs after the clean stage log under
``logs/<job>-<hash of their stage's config>``, so a changed ``dedup``/``tokenize``/``mix`` section reruns its jobs,
and a job that has work to do makes every job after it run again (their input changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from moss_data.chain.executors import build_executor
from moss_data.chain.layout import ChainLayout
from moss_data.chain.recipe import CorpusRecipe
from moss_data.chain.report_step import ChainReport
from moss_data.corpus.pipeline import clean_plan
from moss_data.dedup.stage import dedup_plan
from moss_data.io.atomic import atomic_write_json, config_hash
from moss_data.io.storage import as_path, remove_tree
from moss_data.plan import Job
from moss_data.recipe import is_url
from moss_data.text.langid import lid176_model_path
from moss_data.tokens.stage import mix_plan, tokenize_plan


class ChainError(RuntimeError):
    """A job of the chain did not complete; the message names it and where its logs are."""


@dataclass
class PlannedJob:
    job: Job
    logging_dir: str


def corpus_plan(recipe: CorpusRecipe) -> list[PlannedJob]:
    """Every job of the chain in order, with its logging folder."""
    layout = ChainLayout(recipe.output_dir)
    tasks = recipe.executor.tasks
    planned = [PlannedJob(job, str(layout.logs(job.name))) for job in clean_plan(recipe, recipe.output_dir, tasks)]

    def add(jobs: list[Job], stage_config) -> None:
        key = config_hash(stage_config)
        planned.extend(PlannedJob(job, str(layout.logs(f"{job.name}-{key}"))) for job in jobs)

    docs = layout.clean
    if recipe.dedup.enabled:
        add(dedup_plan(str(layout.clean), str(layout.dedup), recipe.dedup, tasks), recipe.dedup)
        docs = layout.dedup_kept
    if recipe.tokenize.enabled:
        add(tokenize_plan(str(docs), str(recipe.output_dir), recipe.tokenize, tasks), recipe.tokenize)
        if recipe.mix.enabled:
            add(mix_plan(str(recipe.output_dir), recipe.mix), {"tokenize": recipe.tokenize.model_dump(mode="json"),
                                                              "mix": recipe.mix.model_dump(mode="json")})
    add([Job("report", [ChainReport(recipe)], 1)], recipe)
    names = [p.job.name for p in planned]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"job names must be unique in a chain; rename the source(s) {clashes}")
    return planned


def check_sources(recipe: CorpusRecipe) -> None:
    if any(s.kind != "code" for s in recipe.sources):
        lid176_model_path()  # fail before any task starts, with the install hint
    for source in recipe.sources:
        if not is_url(source.path) and not Path(source.path).exists():
            raise FileNotFoundError(
                f"source {source.name!r}: {source.path} does not exist (for the sample corpus run `just sample`)"
            )


def run_corpus(recipe: CorpusRecipe) -> Path:
    """Runs the chain here (local, ray) or submits it (slurm). Returns the report folder (complete once the chain
    is; on Slurm, see ``corpus-status``)."""
    check_sources(recipe)
    as_path(recipe.output_dir).mkdir(parents=True, exist_ok=True)
    planned = corpus_plan(recipe)
    if recipe.executor.kind == "slurm":
        submit_chain(recipe, planned)
    else:
        stale = False
        for p in planned:
            stale = run_job(recipe, p, stale)
    return ChainLayout(recipe.output_dir).report


def rerun_if_upstream_changed(executor, p: PlannedJob, stale: bool) -> bool:
    """A job whose upstream redid work must run again, so its completion markers go; returns whether this job
    will do work (and so makes everything after it run again)."""
    if stale:
        remove_tree(as_path(p.logging_dir) / "completions")
    return stale or bool(executor.get_incomplete_ranks())


def run_job(recipe: CorpusRecipe, p: PlannedJob, stale: bool) -> bool:
    """Runs one job to completion (or raises ChainError); returns whether it did work."""
    executor = build_executor(recipe.executor, p.job, p.logging_dir)
    did_work = rerun_if_upstream_changed(executor, p, stale)
    logger.info(f"corpus chain: {p.job.name} ({p.job.tasks} task(s)) on {recipe.executor.kind}"
                + ("" if did_work else ": already complete"))
    try:
        executor.run()
    except Exception as e:  # datatrove's local executor raises when a task crashes
        raise ChainError(f"job {p.job.name} failed: {e}; logs in {p.logging_dir}/logs") from e
    failed = executor.get_incomplete_ranks(skip_completed=True)
    if failed:
        raise ChainError(f"job {p.job.name}: task(s) {failed} of {p.job.tasks} did not complete; logs in "
                         f"{p.logging_dir}/logs; fix the cause and run the same command again (done tasks are kept)")
    return did_work


def submit_chain(recipe: CorpusRecipe, planned: list[PlannedJob]) -> list[dict]:
    """Submits every job, each depending on the one before; saves and returns the job ids."""
    previous, stale = None, False
    executors = []
    for p in planned:
        executor = build_executor(recipe.executor, p.job, p.logging_dir, depends=previous,
                                  job_name=f"{recipe.name}-{p.job.name}")
        stale = rerun_if_upstream_changed(executor, p, stale)
        executors.append(executor)
        previous = executor
    previous.run()  # launches its dependencies first, in order
    jobs = [{"name": p.job.name, "tasks": p.job.tasks, "logging_dir": p.logging_dir, "slurm_job_id": e.job_id}
            for p, e in zip(planned, executors)]
    atomic_write_json(ChainLayout(recipe.output_dir).chain_state, {"executor": "slurm", "jobs": jobs})
    for j in jobs:
        state = "already complete" if str(j["slurm_job_id"]) == "-1" else f"job {j['slurm_job_id']}"
        logger.info(f"corpus chain: {j['name']}: {state}")
    return jobs
