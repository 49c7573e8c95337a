"""The corpus chain: clean (one job per source) -> dedup -> tokenize -> mix -> reports, every job a datatrove pipeline
on the recipe's executor.

- ``local`` and ``ray``: the jobs run here one after the other; a job with a failed task stops the chain with the
  job's name, the failed ranks and where their logs are (nothing downstream runs on incomplete input).
- ``slurm``: one call submits the whole chain as Slurm array jobs chained with ``--dependency=afterok`` and returns
  the job ids (also saved in ``chain.json``); a job whose upstream failed is cancelled by Slurm
  (``--kill-on-invalid-dep=yes``), never left pending. ``moss-data corpus-status`` says where a chain stands.

Re-running resumes: datatrove skips every task whose completion marker exists. Every job logs under
``logs/<job>-<hash of its key>`` (what its outputs are made from: recipe section, stage code version), so a changed
key redoes the job from scratch, and a job that has work to do makes every later job that reads it run again.
``report/runs.json`` records what each job did and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from loguru import logger
from upath import UPath

from moss_data.executors import build_executor
from moss_data.chain.layout import ChainLayout
from moss_data.chain.recipe import CorpusRecipe
from moss_data.chain.report_step import ChainReport
from moss_data.corpus.layout import CleanLayout
from moss_data.corpus.pipeline import clean_key, clean_plan
from moss_data.dedup.stage import DEDUP_VERSION, dedup_plan
from moss_data.io.atomic import atomic_write_json, keyed_name
from moss_data.io.run_lock import RunLock
from moss_data.io.storage import as_path, remove_tree
from moss_data.io.tokens import TokenCorpus
from moss_data.plan import Job
from moss_data.recipe import is_url
from moss_data.text.langid import lid176_model_path
from moss_data.tokens.stage import TOKENS_VERSION, mix_plan, tokenize_plan


class ChainError(RuntimeError):
    """A job of the chain did not complete; the message names it and where its logs are."""


STAGES = ("clean", "dedup", "tokenize", "mix", "report")
KEY_FILE = "moss_key.json"  # in a job's logging folder: the key its outputs were made from


@dataclass
class PlannedJob:
    """One job of the chain: its logging folder is ``logs/<job>-<hash of key>``, so a changed key (recipe section or
    stage code version) gets a fresh folder and the job is redone; ``clears`` are outputs removed before a redo."""

    job: Job
    logging_dir: str
    stage: str
    key: dict
    clears: list[str] = field(default_factory=list)


def corpus_plan(recipe: CorpusRecipe) -> list[PlannedJob]:
    """Every job of the chain in order, with its logging folder."""
    layout = ChainLayout(recipe.output_dir)
    tasks = recipe.executor.tasks
    planned: list[PlannedJob] = []

    def add(jobs: list[Job], stage: str, key: dict, clears=lambda job: []) -> None:
        for job in jobs:
            logs = str(layout.logs(keyed_name(job.name, key)))
            planned.append(PlannedJob(job, logs, stage, key, clears(job)))

    sources = {s.name: s for s in recipe.sources}
    for job in clean_plan(recipe, recipe.output_dir, tasks):
        add([job], "clean", clean_key(recipe, sources[job.name]),
            lambda job: [str(p) for p in CleanLayout(recipe.output_dir).source_outputs(job.name)])
    # what a redo from scratch removes first, by the job that starts each stage's outputs
    tokens = TokenCorpus(recipe.output_dir)
    starts = {"dedup-signatures": [layout.dedup], "tokenizer": [tokens.tokenizer_manifest_path],
              "tokenize": [tokens.tokens_dir], "mix": [tokens.mix_manifest_path]}

    def stage_clears(job: Job) -> list[str]:
        return [str(p) for p in starts.get(job.name, [])]

    docs = layout.clean
    if recipe.dedup.enabled:
        add(dedup_plan(str(layout.clean), str(layout.dedup), recipe.dedup, tasks), "dedup",
            {"version": DEDUP_VERSION, "dedup": recipe.dedup.model_dump(mode="json")}, stage_clears)
        docs = layout.dedup_kept
    if recipe.tokenize.enabled:
        tokenize_key = {"version": TOKENS_VERSION, "tokenize": recipe.tokenize.model_dump(mode="json")}
        add(tokenize_plan(str(docs), str(recipe.output_dir), recipe.tokenize, tasks), "tokenize", tokenize_key,
            stage_clears)
        if recipe.mix.enabled:
            add(mix_plan(str(recipe.output_dir), recipe.mix), "mix",
                {**tokenize_key, "mix": recipe.mix.model_dump(mode="json")}, stage_clears)
    add([Job("report", [ChainReport(recipe)], 1)], "report", recipe.model_dump(mode="json"))
    names = [p.job.name for p in planned]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"job names must be unique in a chain; rename the source(s) {clashes}")
    return planned


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts."""
    out = []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def earlier_runs(p: PlannedJob) -> list[tuple[UPath, dict | None]]:
    """This job's logging folders made with another key, and the key each was made with (None if unknown)."""
    here = as_path(p.logging_dir)
    pattern = re.compile(rf"^{re.escape(p.job.name)}-[0-9a-f]{{16}}$")
    found = []
    for folder in here.parent.glob(f"{p.job.name}-*") if here.parent.exists() else []:
        if folder.name != here.name and pattern.match(folder.name):
            key_file = folder / KEY_FILE
            found.append((folder, orjson.loads(key_file.read_bytes())["key"] if key_file.exists() else None))
    return found


def prepare_job(p: PlannedJob, executor, stale: bool, force: bool) -> tuple[bool, str]:
    """Before a job runs (or is submitted): outputs of another key, or of a forced or upstream-redone job, are not
    resumable, so their completion markers (and, for a changed key or --force, the job's own outputs) go. Returns
    whether the job has work to do and why, in words for the run record."""
    earlier = earlier_runs(p)
    why = ""
    if earlier:
        keys = sorted({k for _, old in earlier for k in (changed_keys(old, p.key) if old else ["(unknown)"])})
        why = f"redone: changed since the last run: {', '.join(keys)}"
    elif force:
        why = "redone: --force"
    completions = as_path(p.logging_dir) / "completions"
    if earlier or force:
        for folder, _ in earlier:
            remove_tree(folder)
        for output in p.clears:
            remove_tree(output)
        remove_tree(completions)
    elif stale:
        if completions.exists() and any(completions.iterdir()):
            why = "redone: an earlier job of the chain was redone"
        remove_tree(completions)
    atomic_write_json(as_path(p.logging_dir) / KEY_FILE, {"job": p.job.name, "key": p.key})
    incomplete = executor.get_incomplete_ranks()
    if incomplete and not why:
        done = p.job.tasks - len(incomplete)
        why = "first run" if done == 0 else f"resumed: {done} of {p.job.tasks} tasks were done"
    return bool(incomplete), why or "kept: done with this key"


def run_record(p: PlannedJob, why: str) -> dict:
    """One row of ``report/runs.json``."""
    return {"job": p.job.name, "stage": p.stage, "tasks": p.job.tasks, "what": why}


def check_sources(recipe: CorpusRecipe) -> None:
    if any(s.kind != "code" for s in recipe.sources):
        lid176_model_path()  # fail before any task starts, with the install hint
    for source in recipe.sources:
        if not is_url(source.path) and not Path(source.path).exists():
            raise FileNotFoundError(
                f"source {source.name!r}: {source.path} does not exist (for the sample corpus run `just sample`)"
            )


def forced_jobs(planned: list[PlannedJob], force: list[str]) -> set[str]:
    """Job names that ``--force`` names: a stage (clean, dedup, tokenize, mix, report) or a job."""
    known = set(STAGES) | {p.job.name for p in planned}
    unknown = sorted(set(force) - known)
    if unknown:
        raise ValueError(f"--force {unknown}: not a stage {list(STAGES)} or a job of this chain "
                         f"{[p.job.name for p in planned]}")
    return {p.job.name for p in planned if p.stage in force or p.job.name in force}


def run_corpus(recipe: CorpusRecipe, force: list[str] | None = None) -> Path:
    """Runs the chain here (local, ray) or submits it (slurm). ``force``: stages or jobs to redo from scratch (and so
    everything after them). Returns the report folder (complete once the chain is; on Slurm, see
    ``corpus-status``)."""
    check_sources(recipe)
    as_path(recipe.output_dir).mkdir(parents=True, exist_ok=True)
    planned = corpus_plan(recipe)
    forced = forced_jobs(planned, force or [])
    with RunLock(ChainLayout(recipe.output_dir).lock):
        if recipe.executor.kind == "slurm":
            submit_chain(recipe, planned, forced)
        else:
            did_work, runs = {}, []
            for p in planned:
                did_work[p.job.name] = run_job(recipe, p, upstream_redone(p, did_work), p.job.name in forced, runs)
    return ChainLayout(recipe.output_dir).report


def upstream_redone(p: PlannedJob, did_work: dict[str, bool]) -> bool:
    """Whether a job's input was remade in this run: a clean job reads only its source; every later job reads what
    the jobs before it made."""
    return p.stage != "clean" and any(did_work.values())


def record_runs(recipe: CorpusRecipe, runs: list[dict]) -> None:
    """What this run did with each job and why (``report/runs.json``; the data report shows it)."""
    atomic_write_json(ChainLayout(recipe.output_dir).runs, {"executor": recipe.executor.kind, "jobs": runs})


def run_job(recipe: CorpusRecipe, p: PlannedJob, stale: bool, force: bool, runs: list[dict]) -> bool:
    """Runs one job to completion (or raises ChainError); returns whether it did work."""
    executor = build_executor(recipe.executor, p.job, p.logging_dir)
    did_work, why = prepare_job(p, executor, stale, force)
    runs.append(run_record(p, why))
    record_runs(recipe, runs)
    logger.info(f"corpus chain: {p.job.name} ({p.job.tasks} task(s)) on {recipe.executor.kind}: {why}")
    try:
        executor.run()
    except Exception as e:  # datatrove's local executor raises when a task crashes
        raise ChainError(f"job {p.job.name} failed: {e}; logs in {p.logging_dir}/logs") from e
    failed = executor.get_incomplete_ranks(skip_completed=True)
    if failed:
        raise ChainError(f"job {p.job.name}: task(s) {failed} of {p.job.tasks} did not complete; logs in "
                         f"{p.logging_dir}/logs; fix the cause and run the same command again (done tasks are kept)")
    return did_work


def submit_chain(recipe: CorpusRecipe, planned: list[PlannedJob], forced: set[str] = frozenset()) -> list[dict]:
    """Submits every job, each depending on the one before; saves and returns the job ids. A chain still running
    from an earlier submission is not submitted again."""
    from moss_data.chain.status import chain_state, chain_status

    if chain_state(chain_status(recipe)) in ("running", "pending"):
        raise ChainError(f"a chain submitted earlier into {recipe.output_dir} is still running: follow it with "
                         "`moss-data corpus-status`, or scancel its jobs before submitting again")
    previous, did_work = None, {}
    executors, runs = [], []
    for p in planned:
        executor = build_executor(recipe.executor, p.job, p.logging_dir, depends=previous,
                                  job_name=f"{recipe.name}-{p.job.name}")
        did_work[p.job.name], why = prepare_job(p, executor, upstream_redone(p, did_work), p.job.name in forced)
        runs.append(run_record(p, why))
        executors.append(executor)
        previous = executor
    record_runs(recipe, runs)
    previous.run()  # launches its dependencies first, in order
    jobs = [{"name": p.job.name, "tasks": p.job.tasks, "logging_dir": p.logging_dir, "slurm_job_id": e.job_id}
            for p, e in zip(planned, executors)]
    atomic_write_json(ChainLayout(recipe.output_dir).chain_state, {"executor": "slurm", "jobs": jobs})
    for j in jobs:
        state = "already complete" if str(j["slurm_job_id"]) == "-1" else f"job {j['slurm_job_id']}"
        logger.info(f"corpus chain: {j['name']}: {state}")
    return jobs
