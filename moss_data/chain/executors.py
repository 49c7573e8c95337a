"""Which datatrove executor runs a stage's pipeline (``executor:`` in a corpus recipe), and building it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from datatrove.executor.base import PipelineExecutor
from pydantic import Field, model_validator

from moss_data.recipe import StrictModel


class ExecutorConfig(StrictModel):
    """Which datatrove executor runs the pipelines. ``local`` runs here; ``slurm`` submits sbatch array jobs;
    ``ray`` runs on the Ray cluster that ``ray.init()`` finds (install the ``ray`` extra)."""

    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(2, ge=1, description="shards of each source's files; a task reads its share of files")
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
        return self



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
