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

import os
from dataclasses import dataclass, field
from pathlib import Path

import multiprocess
from datatrove.executor import LocalPipelineExecutor
from multiprocess.managers import SyncManager


@dataclass(frozen=True)
class Job:
    name: str  # unique in a chain; names the job's logging folder (completions, stats) and its Slurm job
    pipeline: list = field(compare=False)
    tasks: int = 1

    def __post_init__(self):
        if self.tasks < 1:
            raise ValueError(f"job {self.name}: tasks must be >= 1, got {self.tasks}")


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so a killed run leaves
    no worker behind writing into files the next run rewrites. Elsewhere: nothing."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the call took effect
        os._exit(1)


class LocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor whose helper processes die with the run: its pool workers (children of the
    forkserver, which exits when the run does) and its ``multiprocess`` manager (a fork of the run, which kept the
    forkserver alive after a kill -9 and so every worker too)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._run_pid = os.getpid()

    def run(self):
        default_manager = multiprocess.Manager

        def manager():
            started = SyncManager(ctx=multiprocess.get_context())
            started.start(initializer=die_with_parent)
            return started

        multiprocess.Manager = manager  # datatrove calls multiprocess.Manager() inside run()
        try:
            return super().run()
        finally:
            multiprocess.Manager = default_manager

    def _launch_run_for_rank(self, rank, ranks_q, completed=None, completed_lock=None):
        if os.getpid() != self._run_pid:  # a pool worker (with one worker the ranks run in this process)
            die_with_parent()
        return super()._launch_run_for_rank(rank, ranks_q, completed, completed_lock)


def run_local(jobs: list[Job], logging_root: Path | str, workers: int = -1) -> None:
    """Runs the jobs here, in order, each with datatrove's local executor (completed tasks are skipped on a re-run:
    datatrove's completion markers in ``<logging_root>/<job name>``)."""
    for job in jobs:
        n_workers = workers if workers > 0 else min(job.tasks, os.cpu_count() or 1)
        LocalExecutor(job.pipeline, tasks=job.tasks, workers=n_workers,
                 logging_dir=f"{str(logging_root).rstrip('/')}/{job.name}").run()
