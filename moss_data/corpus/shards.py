"""Reading the corpus engine's document shards (datatrove JSONL, gzip): one way, shared by the report and tests."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

import orjson


def iter_documents(folder: Path, pattern: str = "**/*.jsonl.gz") -> Iterator[dict]:
    """Yields every document (``{"text", "id", "metadata"}``) of the shards under ``folder``, in file-name order."""
    for shard in sorted(Path(folder).glob(pattern)):
        with gzip.open(shard, "rb") as f:
            for line in f:
                yield orjson.loads(line)
