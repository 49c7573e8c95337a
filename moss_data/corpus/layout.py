"""The clean stage's output folder, spelled once::

    clean/<route>/<source>_<rank>.jsonl.gz     kept documents (a document folder), route in {en, zh, code, other}
    excluded/<source>/<step>_<rank>.jsonl.gz   every removed document, metadata.filter_reason says why
    skipped/<source>_<rank>.jsonl              records the readers could not turn into documents, with reasons
    logs/<source>/                             datatrove logs, per-task stats and completion markers (resume)
    report/                                    merged stats (stats.json), summary.json, report.md, removals.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moss_data.io.storage import as_path


@dataclass(frozen=True)
class CleanLayout:
    root: Path

    @property
    def clean(self) -> Path:
        return as_path(self.root) / "clean"

    @property
    def excluded(self) -> Path:
        return as_path(self.root) / "excluded"

    @property
    def skipped(self) -> Path:
        return as_path(self.root) / "skipped"

    @property
    def report(self) -> Path:
        return as_path(self.root) / "report"

    @property
    def summary(self) -> Path:
        return self.report / "summary.json"

    def logs(self, job: str) -> Path:
        """datatrove's logging folder of one job (``<job>-<key hash>``: see ``moss_data.chain.run``)."""
        return as_path(self.root) / "logs" / job

    def source_outputs(self, source: str) -> list[Path]:
        """Everything the clean job of ``source`` wrote (removed before it is redone with another key)."""
        found = list(self.clean.glob(f"*/{source}_*.jsonl.gz")) + list(self.skipped.glob(f"{source}_*"))
        excluded = self.excluded / source
        return found + ([excluded] if excluded.exists() else [])
