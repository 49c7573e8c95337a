"""Preference pairs: the hand-off from the feedback stage to DPO (and to reward-model evaluation).

Layout of a feedback output folder: ``pairs/train.parquet`` and ``pairs/heldout.parquet``. One row per pair:

- ``context_id``: the response it compares (``<conversation_id>:t<n>``, :func:`moss_data.formats.response_id`);
- ``language``, ``category``, ``split`` (``train`` / ``heldout``), ``score_chosen``, ``score_rejected``;
- ``prompt``, ``chosen``, ``rejected``: TRL's conversational preference format, *lossless*: every message with all
  its fields (the meta instruction, earlier turns with their quality tags, inner thoughts, tool calls with their
  arguments, tool results). Messages have fields that differ by role (``tool_calls``, ``thinking``, ``quality``),
  which an Arrow struct would widen or drop, so each column holds the messages as JSON text; :func:`read_pairs`
  gives them back as lists of dicts, exactly as written;
- ``provenance``: JSON (judge, candidate ids, sources).

DPO trains from this file alone; nothing is rebuilt from other shards.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from moss_data.io.atomic import atomic_write

SPLITS = ("train", "heldout")
MESSAGE_COLUMNS = ("prompt", "chosen", "rejected")
SCHEMA = pa.schema([
    ("context_id", pa.string()), ("language", pa.string()), ("category", pa.string()), ("split", pa.string()),
    ("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
    ("score_chosen", pa.int8()), ("score_rejected", pa.int8()), ("provenance", pa.string()),
])


def pairs_path(folder: Path, split: str) -> Path:
    """``folder`` is a feedback output folder."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(folder) / "pairs" / f"{split}.parquet"


def write_pairs(folder: Path, pairs: list[dict]) -> None:
    """Writes every split (an empty split gets an empty file), each atomically."""
    for split in SPLITS:
        rows = [{**p, **{c: orjson.dumps(p[c]).decode() for c in MESSAGE_COLUMNS},
                 "provenance": p["provenance"] if isinstance(p["provenance"], str) else orjson.dumps(p["provenance"]).decode()}
                for p in pairs if p["split"] == split]
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), sink)
        atomic_write(pairs_path(folder, split), sink.getvalue().to_pybytes())


def read_pairs(folder: Path, split: str = "train") -> list[dict]:
    """The pairs of one split, messages decoded (``provenance`` decoded too)."""
    path = pairs_path(folder, split)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the feedback stage (`just feedback`) first")
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        for column in (*MESSAGE_COLUMNS, "provenance"):
            row[column] = orjson.loads(row[column])
    return rows


def count_pairs(folder: Path, split: str = "train") -> int:
    path = pairs_path(folder, split)
    return pq.read_metadata(path).num_rows if path.exists() else 0
