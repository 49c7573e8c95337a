"""Where a corpus chain stands: per job, tasks completed (datatrove's completion markers, for every executor) and,
for a Slurm submission, Slurm's state of its job (``scontrol``; Slurm forgets finished jobs after ``MinJobAge``,
then the markers alone tell)."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass

import orjson

from moss_data.chain.layout import ChainLayout
from moss_data.chain.recipe import CorpusRecipe
from moss_data.chain.run import corpus_plan
from moss_data.io.storage import as_path

FAILED_STATES = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


@dataclass
class JobStatus:
    name: str
    tasks: int
    completed: int
    slurm_job_id: str | None = None
    slurm_states: list[str] | None = None  # one per array task Slurm still knows

    @property
    def state(self) -> str:
        if self.completed >= self.tasks:
            return "done"
        states = set(self.slurm_states or [])
        if states & FAILED_STATES:
            return "failed"
        if "RUNNING" in states or "COMPLETING" in states:
            return "running"
        if "PENDING" in states:
            return "pending"
        if self.slurm_job_id not in (None, "-1") and not states:
            return "failed"  # submitted, unknown to Slurm now, and its tasks did not all complete
        return "not started"


def completed_tasks(logging_dir: str) -> int:
    folder = as_path(logging_dir) / "completions"
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def slurm_states(job_id: str) -> list[str]:
    """The states of a job's array tasks while slurmctld still knows the job ([] once it is forgotten)."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "--oneliner", str(job_id)], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [field.split("=", 1)[1] for line in out.stdout.splitlines() for field in line.split()
            if field.startswith("JobState=")]


def chain_status(recipe: CorpusRecipe) -> list[JobStatus]:
    state_file = ChainLayout(recipe.output_dir).chain_state
    submitted = {}
    if state_file.exists():
        submitted = {j["name"]: j for j in orjson.loads(state_file.read_bytes())["jobs"]}
    out = []
    for p in corpus_plan(recipe):
        job_id = submitted.get(p.job.name, {}).get("slurm_job_id")
        job_id = None if job_id is None else str(job_id)
        states = slurm_states(job_id) if job_id not in (None, "-1") else []
        out.append(JobStatus(p.job.name, p.job.tasks, completed_tasks(p.logging_dir), job_id, states))
    return out


def chain_state(statuses: list[JobStatus]) -> str:
    """One word for the whole chain: running or pending while any job still is (after a failure Slurm cancels the
    jobs that depend on it, which takes a scheduling pass), then failed, done or not started."""
    states = [s.state for s in statuses]
    for word in ("running", "pending", "failed"):
        if word in states:
            return word
    return "done" if all(s == "done" for s in states) else "not started"


def as_rows(statuses: list[JobStatus]) -> list[dict]:
    return [asdict(s) | {"state": s.state} for s in statuses]
