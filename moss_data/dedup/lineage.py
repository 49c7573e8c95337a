"""Stable document ids and the lineage check between dedup stages.

A document's ``doc_uid`` is the xxh3-64 of its source name and source id: the same document gets the same uid in
every run. An input *fingerprint* is a hash over the input files' names, sizes and content hashes. A removal list
records the fingerprint of the input it was computed on; applying it to anything else raises :class:`LineageError`,
as does a uid the input does not contain (checked while the removals are applied).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson
import xxhash

from moss_data.io.atomic import atomic_write


class LineageError(RuntimeError):
    """A removal list does not belong to the input it is being applied to."""


def doc_uid(source: str, doc_id: str) -> str:
    return xxhash.xxh3_64_hexdigest(f"{source}\0{doc_id}")


@dataclass
class RemovalList:
    """Documents to remove from one exact input, with why."""

    input_fingerprint: str
    entries: dict[str, dict] = field(default_factory=dict)  # uid -> {"reason", "duplicate_of", "similarity"}

    def save(self, path: Path) -> None:
        atomic_write(path, orjson.dumps({"input_fingerprint": self.input_fingerprint, "entries": self.entries}))

    @classmethod
    def load(cls, path: Path) -> "RemovalList":
        data = orjson.loads(path.read_bytes())
        return cls(input_fingerprint=data["input_fingerprint"], entries=data["entries"])

    def check_applies_to(self, fingerprint: str) -> None:
        if fingerprint != self.input_fingerprint:
            raise LineageError(
                f"removal list was computed on input {self.input_fingerprint[:12]} but this input is "
                f"{fingerprint[:12]}: the input changed since; recompute the removals (rerun the dedup stage)"
            )
