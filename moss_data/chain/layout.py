"""The corpus chain's output folder, spelled once: which stage writes where."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moss_data.io.storage import as_path

from moss_data.corpus.layout import CleanLayout
from moss_data.dedup.stage import kept_dir


@dataclass(frozen=True)
class ChainLayout:
    root: Path

    @property
    def clean(self) -> Path:
        """Clean stage: its document folder (the stage's whole layout: :class:`CleanLayout`)."""
        return CleanLayout(self.root).clean

    @property
    def dedup(self) -> Path:
        """Dedup stage output: ``kept/`` and ``removed/`` document folders, ``removals.json``, ``manifest.json``."""
        return as_path(self.root) / "dedup"

    @property
    def dedup_kept(self) -> Path:
        return kept_dir(self.dedup)

    @property
    def report(self) -> Path:
        """Clean-stage report (``report.md``, ``summary.json``, ``stats.json``) and the data report."""
        return CleanLayout(self.root).report

    @property
    def clean_summary(self) -> Path:
        """The clean stage's report tables as data (removals by route, step and reason; kept documents; ...)."""
        return CleanLayout(self.root).summary

    @property
    def chain_state(self) -> Path:
        """What a Slurm submission launched: each job's name, tasks, logging folder and Slurm job id."""
        return as_path(self.root) / "chain.json"

    @property
    def runs(self) -> Path:
        """What the last run did with each job and why (kept, first run, resumed, redone: which keys changed)."""
        return CleanLayout(self.root).report / "runs.json"

    @property
    def lock(self) -> Path:
        """Held by the run writing into this folder (pid, host): one run per output folder."""
        return as_path(self.root) / ".moss-run.lock"

    def logs(self, job: str) -> Path:
        """datatrove's logging folder of one job (stats, completions, task logs); a clean job is named after its
        source."""
        return CleanLayout(self.root).logs(job)
