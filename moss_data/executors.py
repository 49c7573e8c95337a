"""Which datatrove executor runs a stage's pipeline (``executor:`` in a corpus recipe), and building it."""

from __future__ import annotations

import os
from typing import Literal

from datatrove.executor.base import PipelineExecutor
from pydantic import Field, model_validator

from moss_data.plan import Job, LocalExecutor
from moss_data.recipe import StrictModel


class ExecutorConfig(StrictModel):
    """Which datatrove executor runs the pipelines. ``local`` runs here; ``slurm`` submits sbatch array jobs;
    ``ray`` runs on the Ray cluster that ``ray.init()`` finds (install the ``ray`` extra)."""

    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(2, ge=1, description="tasks of every sharded job (clean, dedup signatures and apply, "
                                           "tokenize): each reads its share of the files")
    workers: int = Field(-1, description="tasks run at once (-1: as many as tasks; local and ray)")
    # slurm and ray
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2
    # slurm only
    partition: str | None = None
    time: str = "24:00:00"
    qos: str = "normal"
    venv_path: str | None = None
    sbatch_args: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _slurm_needs_partition(self):
        if self.kind == "slurm" and not self.partition:
            raise ValueError("executor.kind slurm needs executor.partition")
        if self.kind == "slurm" and not float(self.mem_per_cpu_gb).is_integer():
            raise ValueError("executor.mem_per_cpu_gb must be whole gigabytes on Slurm (sbatch --mem-per-cpu=<n>G)")
        return self



def build_executor(cfg: ExecutorConfig, job: Job, logging_dir: str, depends: PipelineExecutor | None = None,
                   job_name: str | None = None) -> PipelineExecutor:
    """The executor of ``cfg.kind`` for one job of a plan (its own task count), after ``depends`` when given."""
    workers = cfg.workers if cfg.workers > 0 else min(job.tasks, os.cpu_count() or 1)
    workers = min(workers, job.tasks)
    if cfg.kind == "local":
        return LocalExecutor(job.pipeline, tasks=job.tasks, workers=workers, logging_dir=logging_dir, depends=depends)
    if cfg.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            job.pipeline,
            tasks=job.tasks,
            time=cfg.time,
            partition=cfg.partition,
            cpus_per_task=cfg.cpus_per_task,
            # datatrove writes f"{mem}G": sbatch rejects "2.0G", so whole gigabytes go as an int
            mem_per_cpu_gb=int(cfg.mem_per_cpu_gb),
            qos=cfg.qos,
            venv_path=cfg.venv_path,
            # a job whose upstream failed is cancelled by Slurm instead of pending forever (DependencyNeverSatisfied)
            sbatch_args={"kill-on-invalid-dep": "yes", **cfg.sbatch_args},
            job_name=job_name or job.name,
            logging_dir=logging_dir,
            depends=depends,
        )
    try:
        from datatrove.executor.ray import RayPipelineExecutor
        import ray  # noqa: F401
    except ImportError as e:
        raise RuntimeError("executor.kind ray needs Ray: pip install -e '.[ray]'") from e
    return RayPipelineExecutor(
        job.pipeline,
        tasks=job.tasks,
        workers=workers,
        cpus_per_task=cfg.cpus_per_task,
        mem_per_cpu_gb=cfg.mem_per_cpu_gb,
        logging_dir=logging_dir,
        depends=depends,
    )
