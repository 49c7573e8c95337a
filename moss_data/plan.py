"""How a stage describes its work to whatever runs it: a list of :class:`Job` s, each one datatrove pipeline sharded
over ``tasks`` tasks, to run in order (each job after the one before it has finished).

Stages return plans; they never pick an executor. The corpus chain (:mod:`moss_data.chain`) turns every job of every
stage into a datatrove executor (local, Slurm or Ray) chained with ``depends=``, so one command submits the whole
chain. :func:`run_local` runs a plan here, for a stage used on its own (tests, benchmarks).

A job's steps are datatrove ``PipelineStep`` s. Steps that write shards of their own use ``rank`` and
``world_size`` from ``run()``; steps that do not read documents ignore ``data``. Everything a step needs travels in
its constructor arguments (a Slurm job unpickles the pipeline in a fresh process), so steps hold paths and configs,
never open files or models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Job:
    name: str  # unique in a chain; names the job's logging folder (completions, stats) and its Slurm job
    pipeline: list = field(compare=False)
    tasks: int = 1

    def __post_init__(self):
        if self.tasks < 1:
            raise ValueError(f"job {self.name}: tasks must be >= 1, got {self.tasks}")


def run_local(jobs: list[Job], logging_root: Path | str, workers: int = -1) -> None:
    """Runs the jobs here, in order, each with datatrove's local executor (completed tasks are skipped on a re-run:
    datatrove's completion markers in ``<logging_root>/<job name>``)."""
    import os

    from datatrove.executor import LocalPipelineExecutor

    for job in jobs:
        n_workers = workers if workers > 0 else min(job.tasks, os.cpu_count() or 1)
        LocalPipelineExecutor(job.pipeline, tasks=job.tasks, workers=n_workers,
                              logging_dir=f"{str(logging_root).rstrip('/')}/{job.name}").run()
