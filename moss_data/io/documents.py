"""Document shards: the hand-off between the corpus stages (clean -> dedup -> tokenize) and to the search tool.

A document folder holds one sub-folder per route (``en``, ``zh``, ``code``, ``other``), each with datatrove JSONL
shards (gzip): ``<folder>/<route>/<name>_<rank>.jsonl.gz``; a line is ``{"text", "id", "metadata"}`` with
``metadata.route`` and ``metadata.source``. Writers are datatrove's ``JsonlWriter`` with :func:`route_filename`.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

import orjson

from moss_data.io.storage import as_path

SHARD_PATTERN = "*/*.jsonl.gz"  # <route>/<shard>, relative to a document folder


def route_filename(prefix: str) -> str:
    """datatrove ``output_filename`` that files each document under its route: ``${route}/<prefix>_${rank}``."""
    return f"${{route}}/{prefix}_${{rank}}.jsonl.gz"


def document_files(folder: Path, pattern: str = "**/*.jsonl.gz") -> list[Path]:
    """The shards under a folder (``SHARD_PATTERN`` for exactly the route sub-folders of a document folder)."""
    return sorted(as_path(folder).glob(pattern), key=str)


def routes_in(folder: Path) -> list[str]:
    """Routes that have a sub-folder in a document folder."""
    folder = as_path(folder)
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def iter_documents(folder: Path, pattern: str = "**/*.jsonl.gz") -> Iterator[dict]:
    """Yields every document (``{"text", "id", "metadata"}``) of the shards under ``folder`` (a document folder, one
    route of it, or any folder of datatrove JSONL shards such as ``excluded/``), in file-name order."""
    for shard in document_files(folder, pattern):
        with shard.open("rb") as raw, gzip.open(raw, "rb") as f:
            for line in f:
                yield orjson.loads(line)
