"""Token shards the trainer reads by memory map.

A shard is ``<name>.bin`` (the token ids of its documents back to back, each document followed by the end-of-document
token; uint16 when the vocabulary fits, else uint32) and ``<name>.idx.npy`` (int64 offsets: document ``i`` is
``tokens[idx[i]:idx[i+1]]``, its end-of-document token included). ``<name>.json`` holds dtype, counts and the
tokenizer's hash, and is written last: a shard without it is incomplete and is rewritten on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


class ShardWriter:
    def __init__(self, path: Path, dtype: np.dtype, tokenizer_hash: str, source_hash: str = ""):
        self.path = path
        self.source_hash = source_hash
        self.dtype = dtype
        self.tokenizer_hash = tokenizer_hash
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
        np.save(self.path.with_suffix(".idx.npy"), np.asarray(self.offsets, dtype=np.int64))
        meta = {
            "dtype": self.dtype.name,
            "documents": len(self.offsets) - 1,
            "tokens": self.offsets[-1],
            "tokenizer_hash": self.tokenizer_hash,
            "source_hash": self.source_hash,
        }
        self.path.with_suffix(".json").write_bytes(orjson.dumps(meta))
        return meta


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
