"""Packed pretraining blocks over the corpus engine's mix, readable at random: what a distributed sampler needs.

The corpus run's mix index lists (shard, document) rows in training order over every token shard of every route.
Documents are packed whole into blocks of ``block_size`` tokens in that order (a document that does not fit the rest
of a block starts the next one; one longer than a block is cut into block-sized pieces), so no block mixes a
document's tokens into another's context.

Packing is greedy and sequential, so the layout is computed once from the document lengths alone: the *block index*,
one row per block (first mix row, offset into that row's document, real tokens), like Megatron's sample index. Any
block is then read in O(its documents) from the memory-mapped shards, so every rank reads only its own blocks (a
``DistributedSampler`` / accelerate's batch sharding over a map-style dataset), and resuming at step k skips
k x global batch blocks without reading them. The index is cached beside the run, keyed by the mix and the block
size.

Each block's attention stays inside its documents: position ids restart at every document piece, and no token is
trained to predict the first token of the next piece. With no attention mask given, transformers derives the
documents from the position ids: flash-attention's varlen kernels on a GPU (memory linear in the block length), a
block-diagonal causal mask on the CPU (``test_pretrain`` checks it against each document computed alone).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moss_data.io.atomic import atomic_write, keyed_name
from moss_data.io.storage import load_npy
from moss_data.io.tokens import TokenCorpus, TokenShard

INDEX_VERSION = 1


@dataclass
class Block:
    ids: np.ndarray  # int64, block_size, padded with pad_id
    segments: np.ndarray  # 0 = padding, 1..k = the k-th document piece in the block


def block_layout(lengths: np.ndarray | Iterable[np.ndarray], block_size: int) -> np.ndarray:
    """Rows (first mix row, offset into its document, real tokens) of the blocks the packing rule makes from
    documents of these lengths, in order. ``lengths`` may come in chunks (a corpus's mix does not fit memory as one
    array at MOSS's scale); within a chunk the pieces are computed with numpy, and one tight loop over the pieces'
    sizes places the block boundaries (greedy packing is sequential)."""
    chunks = [lengths] if isinstance(lengths, np.ndarray) else lengths
    out: list[np.ndarray] = []
    filled, base = 0, 0  # tokens in the open block; mix row of the chunk's first document
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.int64)
        pieces = -(-chunk // block_size)  # a document longer than a block: block-sized pieces (none if empty)
        rows = np.repeat(np.arange(len(chunk), dtype=np.int64), pieces)
        piece_index = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        offsets = piece_index * block_size
        sizes = np.minimum(block_size, chunk[rows] - offsets)
        starts = np.zeros(len(sizes), dtype=bool)
        for i, size in enumerate(sizes.tolist()):
            if filled == 0 or filled + size > block_size:
                starts[i], filled = True, size
            else:
                filled += size
        first = np.flatnonzero(starts)
        carried = first[0] if len(first) else len(sizes)  # the chunk's first pieces fill the block still open
        if carried:
            out[-1][-1, 2] += int(sizes[:carried].sum())
        if len(first):
            real = np.add.reduceat(sizes, first)
            out.append(np.stack([rows[first] + base, offsets[first], real], axis=1))
        base += len(chunk)
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)


class PackedBlocks:
    """The mix as a sequence of packed blocks (a map-style dataset: ``len`` and ``[i]``)."""

    def __init__(self, corpus_dir: Path, block_size: int, pad_id: int, cache_dir: Path | None = None):
        corpus = TokenCorpus(corpus_dir)
        self.block_size, self.pad_id = block_size, pad_id
        self.shards: list[TokenShard] = corpus.mix_shards()
        self.mix = load_npy(corpus.mix_index_path, mmap=True)
        name = keyed_name(f"blocks_{block_size}", [INDEX_VERSION, block_size, corpus.mix_manifest().get("shards")])
        cached = Path(cache_dir) / f"{name}.npy" if cache_dir else None
        if cached is not None and cached.exists():
            self.index = np.load(cached, mmap_mode="r")
        else:
            self.index = block_layout(self._lengths(), block_size)
            if cached is not None:
                buffer = io.BytesIO()
                np.save(buffer, self.index)
                atomic_write(cached, buffer.getvalue())

    def _lengths(self, chunk_rows: int = 1 << 24) -> Iterator[np.ndarray]:
        """Document lengths in mix order, a chunk of mix rows at a time."""
        per_shard = [s.lengths() for s in self.shards]
        first = np.concatenate([[0], np.cumsum([len(x) for x in per_shard])]).astype(np.int64)
        every = np.concatenate(per_shard) if per_shard else np.zeros(0, dtype=np.int64)
        for start in range(0, len(self.mix), chunk_rows):
            rows = np.asarray(self.mix[start : start + chunk_rows])
            yield every[first[rows[:, 0]] + rows[:, 1]]

    def __len__(self) -> int:
        return len(self.index)

    def _document(self, row: int) -> np.ndarray:
        pos, doc = self.mix[row]
        return self.shards[int(pos)].document(int(doc))

    def __getitem__(self, i: int) -> Block:
        row, offset, real = (int(v) for v in self.index[i])
        ids = np.full(self.block_size, self.pad_id, dtype=np.int64)
        segments = np.zeros(self.block_size, dtype=np.int64)
        filled, segment = 0, 0
        while filled < real:
            doc = self._document(row)
            piece = doc[offset : offset + self.block_size][: real - filled]
            segment += 1
            ids[filled : filled + len(piece)] = piece
            segments[filled : filled + len(piece)] = segment
            filled += len(piece)
            offset += len(piece)
            if offset >= len(doc):
                row, offset = row + 1, 0
        return Block(ids, segments)

    def real_tokens(self, blocks: int) -> int:
        """Real (non-pad) tokens in the first ``blocks`` blocks, epochs wrapping around."""
        full, rest = divmod(blocks, len(self))
        real = self.index[:, 2]
        return int(full * real.sum() + real[:rest].sum())


def collate(blocks: list[Block]) -> dict:
    """input_ids, labels and position_ids of a batch of blocks (no attention mask: the position ids say where each
    document starts, and transformers keeps attention inside documents from them)."""
    import torch

    ids = torch.from_numpy(np.stack([b.ids for b in blocks]))
    seg = torch.from_numpy(np.stack([b.segments for b in blocks]))
    length = ids.shape[1]
    starts = torch.ones_like(seg, dtype=torch.bool)
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    index = torch.arange(length).expand_as(seg)
    last_start = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
    position_ids = index - last_start  # padding counts on from the last piece: one more "document" of its own
    labels = ids.clone()
    labels[(seg == 0) | starts] = -100  # padding, and the first token of each piece (its "previous" is another's)
    return {"input_ids": ids, "labels": labels, "position_ids": position_ids}
