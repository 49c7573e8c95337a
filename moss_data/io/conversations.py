"""Conversation shards (the dialogue and feedback stages' output, what SFT, DPO, eval and chat read) you can trust: parquet written atomically, a manifest, resume without duplicates, quarantine.

Layout::

    shards/part_00000.parquet       conversations (one row each), written to .tmp then renamed
    quarantine/part_00000.parquet   malformed outputs with the reason, never silently dropped
    manifest.json                   every finished shard: file, rows, sha256; replaced atomically

Work is keyed by conversation id. On resume, ids in the manifest's shards are done; a shard file that exists but is
not in the manifest (killed between the rename and the manifest update) is adopted if it reads back whole, else
removed; ``.tmp`` files are removed. Rows buffered but not flushed when the process died are simply generated again:
nothing is lost and nothing is written twice.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from loguru import logger

from moss_data.formats import Conversation
from moss_data.io.atomic import atomic_write, file_sha256

SCHEMA = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("category", pa.string()),
        ("language", pa.string()),
        ("num_turns", pa.int32()),
        # quality: the response's tag (feedback stage), null when untagged
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("quality", pa.int8())]))),
        ("moss_record", pa.string()),  # the released MOSS shape, as JSON
        ("provenance", pa.string()),  # model, sampling parameters, seed, template hashes, as JSON
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [("conversation_id", pa.string()), ("category", pa.string()), ("reason", pa.string()), ("raw", pa.string()),
     ("provenance", pa.string())]
)


KINDS = ("shards", "quarantine")  # sub-folders: kept conversations, quarantined outputs


def manifest_path(folder: Path) -> Path:
    """The manifest of a conversation folder; it exists once the folder holds shards (of either kind)."""
    return Path(folder) / "manifest.json"


def shards_dir(folder: Path) -> Path:
    return Path(folder) / "shards"


def quarantine_dir(folder: Path) -> Path:
    return Path(folder) / "quarantine"


def read_conversations(folder: Path) -> list[tuple[Conversation, str, dict]]:
    """(conversation, language, provenance) of every kept conversation of a stage output folder (dialogue or
    feedback), in shard order, from the shards its manifest lists."""
    manifest = manifest_path(folder)
    if not manifest.exists():
        raise FileNotFoundError(f"{folder}: no manifest.json; point at a dialogue or feedback output folder "
                                "(run `just dialogues` / `just feedback` first)")
    out = []
    for shard in orjson.loads(manifest.read_bytes())["shards"]:
        table = pq.read_table(Path(folder) / shard["file"], columns=["moss_record", "language", "provenance"])
        for record, language, prov in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            out.append((Conversation.from_record(orjson.loads(record)), language, orjson.loads(prov)))
    return out


class ShardStore:
    def __init__(self, out: Path, rows_per_shard: int = 500):
        self.out = Path(out)
        self.rows_per_shard = rows_per_shard
        self.manifest_path = manifest_path(self.out)
        shards_dir(self.out).mkdir(parents=True, exist_ok=True)
        quarantine_dir(self.out).mkdir(parents=True, exist_ok=True)
        self.manifest = self._recover()
        self._buffers: dict[str, list[dict]] = {kind: [] for kind in KINDS}

    # -------------------------------------------------------------- state

    def done_ids(self) -> set[str]:
        """Conversation ids already written (kept or quarantined), read from the shards' id column."""
        return {
            cid
            for kind in KINDS
            for s in self.manifest[kind]
            for cid in pq.read_table(self.out / s["file"], columns=["conversation_id"]).column(0).to_pylist()
        }

    def counts(self) -> dict[str, int]:
        return {kind: sum(s["rows"] for s in self.manifest[kind]) for kind in KINDS}

    def _recover(self) -> dict:
        manifest = {kind: [] for kind in KINDS}
        if self.manifest_path.exists():
            manifest = orjson.loads(self.manifest_path.read_bytes())
        for kind in KINDS:
            listed = {s["file"] for s in manifest[kind]}
            for tmp in (self.out / kind).glob("*.tmp"):  # a write cut short by a kill
                tmp.unlink()
            for path in sorted((self.out / kind).glob("part_*.parquet")):
                name = f"{kind}/{path.name}"
                if name in listed:
                    continue
                try:  # finished on disk, killed before the manifest said so: adopt it if it reads back whole
                    table = pq.read_table(path)
                    manifest[kind].append(self._entry(path, kind, table.num_rows))
                    logger.info(f"dialogue shards: adopted {name} ({table.num_rows} rows) left by a killed run")
                except (pa.ArrowException, OSError) as e:
                    logger.warning(f"dialogue shards: removing unreadable {name}: {e}")
                    path.unlink()
        self._write_manifest(manifest)
        return manifest

    # -------------------------------------------------------------- writing

    def add(self, row: dict) -> None:
        self._add("shards", row)

    def quarantine(self, row: dict) -> None:
        self._add("quarantine", row)

    def add_conversation(self, conv: Conversation, language: str, provenance: dict) -> None:
        """A checked conversation as a row: both views (TRL messages, MOSS record) from the same source."""
        self.add({
            "conversation_id": conv.conversation_id,
            "category": conv.category,
            "language": language,
            "num_turns": len(conv.turns),
            "messages": [{"role": m["role"], "content": m["content"], "quality": m.get("quality")}
                         for m in conv.to_messages()],
            "moss_record": orjson.dumps(conv.to_record()).decode(),
            "provenance": orjson.dumps(provenance).decode(),
        })

    def quarantine_output(self, conversation_id: str, category: str, reason: str, raw: str, provenance: dict) -> None:
        self.quarantine({"conversation_id": conversation_id, "category": category, "reason": reason,
                         "raw": raw[:2000], "provenance": orjson.dumps(provenance).decode()})

    def _add(self, kind: str, row: dict) -> None:
        self._buffers[kind].append(row)
        if len(self._buffers[kind]) >= self.rows_per_shard:
            self._flush(kind)

    def flush(self) -> None:
        for kind in KINDS:
            self._flush(kind)

    def _flush(self, kind: str) -> None:
        rows = self._buffers[kind]
        if not rows:
            return
        schema = SCHEMA if kind == "shards" else QUARANTINE_SCHEMA
        index = len(self.manifest[kind])
        path = self.out / kind / f"part_{index:05d}.parquet"
        atomic_write(path, _parquet_bytes(pa.Table.from_pylist(rows, schema=schema)))
        self.manifest[kind].append(self._entry(path, kind, len(rows)))
        self._write_manifest(self.manifest)
        self._buffers[kind] = []

    def _entry(self, path: Path, kind: str, rows: int) -> dict:
        return {"file": f"{kind}/{path.name}", "rows": rows, "sha256": file_sha256(path)}

    def _write_manifest(self, manifest: dict) -> None:
        atomic_write(self.manifest_path, orjson.dumps(manifest))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()
