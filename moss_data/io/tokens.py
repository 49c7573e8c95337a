"""Token shards and the mix index: the hand-off from the corpus engine to the pretrainer, read by memory map.

Layout of a corpus run's output folder (:class:`TokenCorpus` spells it; nobody else does)::

    tokenizer/tokenizer.json         the byte-level BPE the shards were encoded with
    tokens/<route>/part_00000.*      one token shard per route (below), ``.uids`` = one doc_uid a line
    tokens/manifest.json             tokenizer hash, vocabulary size, per-route shard meta
    mix/index.npy                    int64 rows (route position in the mix manifest's ``routes``, document index)
    mix/manifest.json                routes, target and achieved ratios, tokens per route


A shard is ``<name>.bin`` (the token ids of its documents back to back, each document followed by the end-of-document
token; uint16 when the vocabulary fits, else uint32) and ``<name>.idx.npy`` (int64 offsets: document ``i`` is
``tokens[idx[i]:idx[i+1]]``, its end-of-document token included). ``<name>.json`` holds dtype, counts and the
tokenizer's hash, and is written last: a shard without it is incomplete and is rewritten on resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from moss_data.io.atomic import atomic_write, atomic_write_json


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


class ShardWriter:
    """Writes one token shard. ``key`` (what the shard is made from: tokenizer hash, input fingerprint) is stored in
    its meta file, which is written last, so the meta doubles as the shard's completion record (``StageRun``)."""

    def __init__(self, path: Path, dtype: np.dtype, key: dict):
        self.path = path
        self.key = key
        self.dtype = dtype
        self.offsets = [0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)  # the shard is incomplete until close() writes it
        self._bin = open(path.with_suffix(".bin.tmp"), "wb")

    def add(self, ids: list[int]) -> None:
        arr = np.asarray(ids, dtype=self.dtype)
        self._bin.write(arr.tobytes())
        self.offsets.append(self.offsets[-1] + len(arr))

    def close(self) -> dict:
        self._bin.close()
        self.path.with_suffix(".bin.tmp").replace(self.path.with_suffix(".bin"))
        _save_npy(self.path.with_suffix(".idx.npy"), np.asarray(self.offsets, dtype=np.int64))
        meta = {"key": self.key, "dtype": self.dtype.name, "documents": len(self.offsets) - 1, "tokens": self.offsets[-1]}
        atomic_write_json(self.path.with_suffix(".json"), meta, indent=False)  # last: marks the shard complete
        return meta

    def write_uids(self, uids: list[str]) -> None:
        """The doc_uid of each document, in shard order (traces a token document back to its source)."""
        atomic_write(self.path.with_suffix(".uids"), ("\n".join(uids) + "\n").encode())


@dataclass
class TokenShard:
    tokens: np.ndarray  # memory-mapped
    offsets: np.ndarray
    meta: dict

    @classmethod
    def open(cls, path: Path) -> "TokenShard":
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not meta_path.exists():
            raise FileNotFoundError(f"token shard {path} is incomplete (no {meta_path.name}); rerun the tokenize stage")
        meta = orjson.loads(meta_path.read_bytes())
        tokens = np.memmap(path.with_suffix(".bin"), dtype=meta["dtype"], mode="r")
        offsets = np.load(path.with_suffix(".idx.npy"))
        if offsets[-1] != len(tokens):
            raise ValueError(f"token shard {path}: index ends at {offsets[-1]} but the .bin holds {len(tokens)} tokens")
        return cls(tokens=tokens, offsets=offsets, meta=meta)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write(path, buf.getvalue())


@dataclass(frozen=True)
class TokenCorpus:
    """The token shards and mix of one corpus run's output folder."""

    root: Path

    @property
    def tokenizer_path(self) -> Path:
        return Path(self.root) / "tokenizer" / "tokenizer.json"

    @property
    def manifest_path(self) -> Path:
        return Path(self.root) / "tokens" / "manifest.json"

    @property
    def mix_index_path(self) -> Path:
        return Path(self.root) / "mix" / "index.npy"

    @property
    def mix_manifest_path(self) -> Path:
        return Path(self.root) / "mix" / "manifest.json"

    def shard_path(self, route: str) -> Path:
        return Path(self.root) / "tokens" / route / "part_00000"

    def routes(self) -> list[str]:
        """Routes whose shard is complete."""
        return sorted(p.parent.name for p in (Path(self.root) / "tokens").glob("*/part_00000.json"))

    def open_shards(self, routes: list[str] | None = None) -> dict[str, TokenShard]:
        return {r: TokenShard.open(self.shard_path(r)) for r in (self.routes() if routes is None else routes)}

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def write_mix_index(self, index: np.ndarray) -> None:
        """Rows of (route position in the mix manifest's ``routes``, document index); write the manifest after it."""
        _save_npy(self.mix_index_path, index.astype(np.int64))

    def mix_manifest(self) -> dict:
        if not self.mix_manifest_path.exists():
            raise FileNotFoundError(f"{self.mix_manifest_path} not found: run the corpus recipe (tokenize and mix) first")
        return orjson.loads(self.mix_manifest_path.read_bytes())

    def mixed_documents(self) -> Iterator[np.ndarray]:
        """Token documents in mix order (each ends with the end-of-document token)."""
        routes = self.mix_manifest()["routes"]
        shards = self.open_shards(routes)
        for route_pos, doc in np.load(self.mix_index_path):
            yield shards[routes[route_pos]].document(int(doc))
