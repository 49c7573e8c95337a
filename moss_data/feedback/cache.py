"""An append-only JSONL cache of finished work (candidates, judgements, verdicts), so a killed feedback run resumes
where it stopped: each batch is appended and fsynced before the next starts; a line cut short by a kill is ignored
on load (and counted), never half-read."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from loguru import logger


class JsonlCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            complete, _, partial = data.rpartition(b"\n")
            if partial:
                logger.warning(f"{self.path.name}: ignoring an unfinished last line left by a killed run")
                with open(self.path, "wb") as f:  # drop it, so appends start on a fresh line
                    f.write(complete + b"\n" if complete else b"")
            for line in complete.splitlines():
                if line.strip():
                    row = orjson.loads(line)
                    self.rows[row["key"]] = row

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __getitem__(self, key: str) -> dict:
        return self.rows[key]

    def put_many(self, rows: list[dict]) -> None:
        if not rows:
            return
        with open(self.path, "ab") as f:
            f.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())
        for r in rows:
            self.rows[r["key"]] = r
