"""Token shards and the mix index: the hand-off from the corpus engine to the pretrainer, read by memory map.

Layout of a corpus run's output folder (:class:`TokenCorpus` spells it; nobody else does)::

    tokenizer/tokenizer.json         the byte-level BPE the shards were encoded with
    tokenizer/manifest.json          what the tokenizer was trained on (its StageRun key)
    tokens/<route>/part_<rank>.*     token shards of a route (below): one per tokenize task that read files of the
                                     route; in rank order they hold the route's documents in file-name order.
                                     ``.uids`` = one doc_uid a line
    tokens/manifest.json             tokenizer, hash, vocabulary size; per route its shards, documents and tokens
    mix/index.npy                    int64 rows (shard position in the mix manifest's ``shards``, document index)
    mix/manifest.json                shards (route, name, key of each), routes, target and achieved ratios, tokens


A shard is ``<name>.bin`` (the token ids of its documents back to back, each document followed by the end-of-document
token; uint16 when the vocabulary fits, else uint32) and ``<name>.idx.npy`` (int64 offsets: document ``i`` is
``tokens[idx[i]:idx[i+1]]``, its end-of-document token included). ``<name>.json`` holds dtype, counts and the shard's
key (tokenizer hash, input fingerprint), and is written last: a shard without it is incomplete, is never read, and
is rewritten on resume.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from moss_data.io.atomic import atomic_write, atomic_write_json
from moss_data.io.storage import as_path, load_npy, local_path, unlink

# every file of a shard, its meta first (removed first, so a half-removed shard reads as incomplete)
EOD = "<|endoftext|>"  # ends every document of a token shard: the trainer packs and splits on it
SHARD_SUFFIXES = (".json", ".json.tmp", ".bin", ".bin.tmp", ".idx.npy", ".idx.npy.tmp", ".uids", ".uids.tmp")
_SHARD_NAME = re.compile(r"^part_(\d{5,})$")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def shard_name(rank: int) -> str:
    """The name of the shard the tokenize task ``rank`` writes in each route it reads."""
    return f"part_{rank:05d}"


def shard_rank(name: str) -> int | None:
    """The task rank in a shard name (``part_00003`` -> 3); None for anything else."""
    m = _SHARD_NAME.match(name)
    return int(m.group(1)) if m else None


class ShardWriter:
    """Writes one token shard. ``key`` (what the shard is made from: tokenizer hash, input fingerprint) is stored in
    its meta file, which is written last, so the meta doubles as the shard's completion record (``StageRun``)."""

    def __init__(self, path: Path, dtype: np.dtype, key: dict):
        self.path = as_path(path)
        self.key = key
        self.dtype = dtype
        self.offsets = [0]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        unlink(self.path.with_suffix(".json"))  # the shard is incomplete until close() writes it
        # tokens stream to a local file: beside the shard, or (object stores) a temporary one uploaded at close
        self._local = local_path(self.path)
        if self._local is not None:
            self._bin_tmp = self._local.with_suffix(".bin.tmp")
            self._bin = open(self._bin_tmp, "wb")
        else:
            fd, name = tempfile.mkstemp(suffix=".bin")
            self._bin_tmp, self._bin = Path(name), os.fdopen(fd, "wb")

    def add(self, ids: list[int]) -> None:
        arr = np.asarray(ids, dtype=self.dtype)
        self._bin.write(arr.tobytes())
        self.offsets.append(self.offsets[-1] + len(arr))

    def close(self) -> dict:
        self._bin.close()
        if self._local is not None:
            self._bin_tmp.replace(self._local.with_suffix(".bin"))
        else:
            self.path.fs.put_file(str(self._bin_tmp), self.path.with_suffix(".bin").path)
            self._bin_tmp.unlink()
        _save_npy(self.path.with_suffix(".idx.npy"), np.asarray(self.offsets, dtype=np.int64))
        meta = {"key": self.key, "dtype": self.dtype.name, "documents": len(self.offsets) - 1,
                "tokens": self.offsets[-1]}
        atomic_write_json(self.path.with_suffix(".json"), meta, indent=False)  # last: marks the shard complete
        return meta

    def write_uids(self, uids: list[str]) -> None:
        """The doc_uid of each document, in shard order (traces a token document back to its source)."""
        atomic_write(self.path.with_suffix(".uids"), "".join(u + "\n" for u in uids).encode())


@dataclass
class TokenShard:
    tokens: np.ndarray  # memory-mapped
    offsets: np.ndarray
    meta: dict
    path: Path | None = None

    @classmethod
    def open(cls, path: Path) -> "TokenShard":
        path = as_path(path)
        meta_path = path.with_suffix(".json")
        if not meta_path.exists():
            raise FileNotFoundError(f"token shard {path} is incomplete (no {meta_path.name}); rerun the tokenize stage")
        meta = orjson.loads(meta_path.read_bytes())
        if meta["tokens"] == 0:  # an empty shard (a task whose files of the route held no documents): no memmap
            tokens = np.zeros(0, dtype=meta["dtype"])
        else:
            local = local_path(path)  # object stores: read whole (mount or copy large corpora for training)
            tokens = (np.memmap(local.with_suffix(".bin"), dtype=meta["dtype"], mode="r") if local is not None else
                      np.frombuffer(path.with_suffix(".bin").read_bytes(), dtype=meta["dtype"]))
        offsets = load_npy(path.with_suffix(".idx.npy"))
        if offsets[-1] != len(tokens) or len(offsets) - 1 != meta["documents"]:
            raise ValueError(f"token shard {path}: index ends at {offsets[-1]} ({len(offsets) - 1} documents) but the "
                             f".bin holds {len(tokens)} tokens and the meta says {meta['documents']} documents")
        return cls(tokens=tokens, offsets=offsets, meta=meta, path=path)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def uids(self) -> list[str]:
        """The doc_uid of each document, in shard order."""
        return self.path.with_suffix(".uids").read_text().split("\n")[:-1]  # one a line, each line ended


@dataclass
class TokenRoute:
    """All shards of one route, read as one sequence of documents (the route's documents in file-name order)."""

    route: str
    shards: list[TokenShard]

    def __post_init__(self):
        self._ends = np.cumsum([len(s) for s in self.shards], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def locate(self, i: int) -> tuple[int, int]:
        """(shard position, document index in that shard) of the route's ``i``-th document."""
        if not 0 <= i < len(self):
            raise IndexError(f"route {self.route}: document {i} of {len(self)}")
        pos = int(np.searchsorted(self._ends, i, side="right"))
        return pos, i - (int(self._ends[pos - 1]) if pos else 0)

    def document(self, i: int) -> np.ndarray:
        pos, j = self.locate(i)
        return self.shards[pos].document(j)

    def documents(self) -> Iterator[np.ndarray]:
        for shard in self.shards:
            for j in range(len(shard)):
                yield shard.document(j)

    def lengths(self) -> np.ndarray:
        return np.concatenate([s.lengths() for s in self.shards]) if self.shards else np.zeros(0, dtype=np.int64)

    def uids(self) -> list[str]:
        return [u for s in self.shards for u in s.uids()]

    def tokens(self) -> np.ndarray:
        """Every token of the route in order (a copy in memory: for tests and small routes)."""
        return np.concatenate([np.asarray(s.tokens) for s in self.shards]) if self.shards else np.zeros(0, np.uint16)


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write(path, buf.getvalue())


@dataclass(frozen=True)
class TokenCorpus:
    """The tokenizer, token shards and mix of one corpus run's output folder."""

    root: Path

    @property
    def tokenizer_path(self) -> Path:
        return as_path(self.root) / "tokenizer" / "tokenizer.json"

    @property
    def tokenizer_manifest_path(self) -> Path:
        """The trained tokenizer's completion record (what it was trained on)."""
        return self.tokenizer_path.with_name("manifest.json")

    @property
    def tokens_dir(self) -> Path:
        return as_path(self.root) / "tokens"

    @property
    def manifest_path(self) -> Path:
        return self.tokens_dir / "manifest.json"

    @property
    def mix_index_path(self) -> Path:
        return as_path(self.root) / "mix" / "index.npy"

    @property
    def mix_manifest_path(self) -> Path:
        return as_path(self.root) / "mix" / "manifest.json"

    def relative(self, path: Path) -> str:
        """A path inside the run's folder, relative to it (what manifests record: the same bytes wherever the run
        lives)."""
        return as_path(path).relative_to(as_path(self.root)).as_posix()

    def shard_path(self, route: str, rank: int = 0) -> Path:
        """The shard the tokenize task ``rank`` writes for ``route`` (suffixes added by the writer and reader)."""
        return self.tokens_dir / route / shard_name(rank)

    def shard_names(self, route: str) -> list[str]:
        """Every shard name present in a route's folder, complete or not, in rank order."""
        folder = self.tokens_dir / route
        names = {p.name.split(".", 1)[0] for p in folder.iterdir()} if folder.is_dir() else set()
        return sorted((n for n in names if shard_rank(n) is not None), key=shard_rank)

    def shards(self, route: str) -> list[Path]:
        """The complete shards of a route, in rank order (= the route's documents in file-name order)."""
        return [p for n in self.shard_names(route) if (p := self.tokens_dir / route / n).with_suffix(".json").exists()]

    def routes(self) -> list[str]:
        """Routes with at least one complete shard."""
        folder = self.tokens_dir
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and self.shards(p.name)) if folder.is_dir() else []

    def open_shards(self, route: str) -> list[TokenShard]:
        """The complete shards of a route, opened, in rank order."""
        return [TokenShard.open(p) for p in self.shards(route)]


    def open_route(self, route: str) -> TokenRoute:
        """The whole route: all its shards as one sequence of documents."""
        return TokenRoute(route, self.open_shards(route))

    def remove_shard(self, route: str, name: str) -> None:
        """Deletes every file of a shard (the meta first, so a reader never sees a complete shard lose its data)."""
        base = self.tokens_dir / route / name
        for suffix in SHARD_SUFFIXES:
            unlink(base.with_name(base.name + suffix))

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            raise FileNotFoundError(f"{self.manifest_path} not found: run the tokenize stage first")
        return orjson.loads(self.manifest_path.read_bytes())

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def write_mix_index(self, index: np.ndarray) -> None:
        """Rows of (shard position in the mix manifest's ``shards``, document index); write the manifest after it."""
        _save_npy(self.mix_index_path, index.astype(np.int64))

    def mix_manifest(self) -> dict:
        if not self.mix_manifest_path.exists():
            raise FileNotFoundError(f"{self.mix_manifest_path} not found: run the corpus recipe (tokenize and mix) "
                                    "first")
        return orjson.loads(self.mix_manifest_path.read_bytes())

    def mix_shards(self) -> list[TokenShard]:
        """The shards the mix index points into, in the manifest's order; refuses shards rewritten since the mix."""
        manifest = self.mix_manifest()
        if "shards" not in manifest:
            raise ValueError(f"{self.mix_manifest_path} predates multi-shard mixes (no shard list): rerun the mix")
        opened = []
        for entry in manifest["shards"]:
            shard = TokenShard.open(self.tokens_dir / entry["route"] / entry["name"])
            if shard.meta.get("key") != entry["key"] or len(shard) != entry["documents"]:
                raise ValueError(f"token shard {entry['route']}/{entry['name']} changed since the mix was made: "
                                 "rerun the mix")
            opened.append(shard)
        return opened

    def mixed_documents(self) -> Iterator[np.ndarray]:
        """Token documents in mix order (each ends with the end-of-document token), over every shard of the mix."""
        shards = self.mix_shards()
        for pos, doc in load_npy(self.mix_index_path, mmap=True):
            yield shards[int(pos)].document(int(doc))
