"""Tokenize the deduplicated documents into token shards, then mix routes to target token ratios.

Tokenize: one shard per route (``tokens/<route>/part_00000``), plus ``.uids`` (one doc_uid a line) to trace a
token document back to its source. Mix: per route a repeat factor ``target / available``: whole passes over the
route, then a seeded random subset of documents for the fraction; the result is an index of (route, document)
pairs in shuffled order (``mix/index.npy``) that the trainer reads with the memory-mapped shards; nothing is copied.
``mix/manifest.json`` reports available and mixed tokens per route and the achieved ratio.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import orjson
import xxhash
from loguru import logger
from pydantic import Field
from tqdm import tqdm

from moss_data.corpus.shards import iter_documents
from moss_data.dedup.lineage import file_sha256
from moss_data.recipe import StrictModel
from moss_data.tokens.shards import ShardWriter, TokenShard, token_dtype
from moss_data.tokens.tokenizer import EOD, load_tokenizer, train_tokenizer


class TokenizeConfig(StrictModel):
    enabled: bool = True
    tokenizer_path: str | None = Field(None, description="a local tokenizer.json to use; default: train one here")
    vocab_size: int = Field(16384, ge=300)
    train_chars_per_route: int = Field(20_000_000, description="characters of each route the trainer sees")
    batch_size: int = 256


class MixConfig(StrictModel):
    enabled: bool = True
    ratios: dict[str, float] = Field(
        default_factory=lambda: {"en": 360.0, "zh": 100.0, "code": 220.0},
        description="target token ratio per route (MOSS: 360B en : 100B zh : 220B code)",
    )
    target_tokens: int | None = Field(None, description="default: the largest mix that repeats no route")
    max_repeats: float = Field(4.0, ge=1, description="no route is repeated more than this; the report shows the shortfall")
    seed: int = 0


def _route_texts(docs_dir: Path, route: str, limit_chars: int):
    used = 0
    for d in iter_documents(docs_dir / route):
        if used >= limit_chars:
            return
        used += len(d["text"])
        yield d["text"]


def _folder_hash(folder: Path) -> str:
    h = xxhash.xxh3_128()
    for f in sorted(folder.glob("*.jsonl.gz")):
        h.update(f.name.encode() + b"\0" + file_sha256(f).encode())
    return h.hexdigest()


def run_tokenize(docs_dir: Path, out: Path, cfg: TokenizeConfig) -> dict:
    routes = sorted(p.name for p in docs_dir.iterdir() if p.is_dir())
    if not routes:
        raise FileNotFoundError(f"tokenize: no routes under {docs_dir}")
    if cfg.tokenizer_path:
        tok_path = Path(cfg.tokenizer_path)
    else:
        tok_path = out / "tokenizer" / "tokenizer.json"
        if not tok_path.exists():
            logger.info(f"tokenize: training a {cfg.vocab_size}-token byte-level BPE on {routes}")
            texts = (t for r in routes for t in _route_texts(docs_dir, r, cfg.train_chars_per_route))
            train_tokenizer(texts, cfg.vocab_size, tok_path)
    tok = load_tokenizer(tok_path)
    tok_hash = xxhash.xxh3_64_hexdigest(tok_path.read_bytes())
    eod = tok.token_to_id(EOD)
    dtype = token_dtype(tok.get_vocab_size())
    manifest = {"tokenizer": str(tok_path), "tokenizer_hash": tok_hash, "vocab_size": tok.get_vocab_size(), "routes": {}}
    for route in routes:
        shard_path = out / "tokens" / route / "part_00000"
        source_hash = _folder_hash(docs_dir / route)
        if shard_path.with_suffix(".json").exists():
            meta = orjson.loads(shard_path.with_suffix(".json").read_bytes())
            if meta["tokenizer_hash"] == tok_hash and meta.get("source_hash") == source_hash:
                manifest["routes"][route] = meta  # same documents, same tokenizer: done before
                continue
        manifest["routes"][route] = _tokenize_route(
            docs_dir / route, ShardWriter(shard_path, dtype, tok_hash, source_hash=source_hash), tok, eod,
            cfg.batch_size, desc=f"tokenize {route}",
        )
    (out / "tokens" / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def _tokenize_route(folder: Path, writer: ShardWriter, tok, eod: int, batch_size: int, desc: str) -> dict:
    """Encodes a route's documents in batches into ``writer``; writes the ``.uids`` file; returns the shard meta."""
    uids: list[str] = []
    docs = iter(tqdm(iter_documents(folder), desc=desc, unit="doc", leave=False))
    while batch := list(itertools.islice(docs, batch_size)):
        for d, enc in zip(batch, tok.encode_batch([d["text"] for d in batch]), strict=True):
            writer.add(enc.ids + [eod])
            uids.append(d["metadata"].get("doc_uid", d["id"]))
    writer.path.with_suffix(".uids").write_text("\n".join(uids) + "\n")
    return writer.close()


def plan_mix(available: dict[str, int], cfg: MixConfig) -> dict[str, float]:
    """Repeat factor per route so that mixed tokens follow ``cfg.ratios``."""
    routes = [r for r in cfg.ratios if available.get(r, 0) > 0]
    missing = [r for r in cfg.ratios if available.get(r, 0) == 0]
    if missing:
        logger.warning(f"mix: no tokens for route(s) {missing}; mixing the others to their ratios")
    if not routes:
        raise ValueError("mix: none of the routes in mix.ratios has tokens")
    share = {r: cfg.ratios[r] / sum(cfg.ratios[r] for r in routes) for r in routes}
    total = cfg.target_tokens or min(available[r] / share[r] for r in routes)
    return {r: min(total * share[r] / available[r], cfg.max_repeats) for r in routes}


def _fill(lengths: np.ndarray, budget: float, rng: np.random.Generator) -> np.ndarray:
    """Documents in random order, each taken if it still fits the token budget (a document is never cut, and one
    big document must not overshoot a small route's budget many times over)."""
    chosen, left = [], budget
    for i in rng.permutation(len(lengths)):
        if lengths[i] <= left:
            chosen.append(i)
            left -= lengths[i]
    return np.asarray(chosen, dtype=np.int64)


def run_mix(out: Path, cfg: MixConfig) -> dict:
    shards = {r: TokenShard.open(out / "tokens" / r / "part_00000") for r in cfg.ratios if (out / "tokens" / r / "part_00000.json").exists()}
    available = {r: int(s.lengths().sum()) for r, s in shards.items()}
    repeats = plan_mix(available, cfg)
    rng = np.random.default_rng(cfg.seed)
    route_names = sorted(repeats)
    picks = []
    mixed = {}
    for ri, route in enumerate(route_names):
        lengths = shards[route].lengths()
        whole, frac = math.floor(repeats[route]), repeats[route] % 1
        docs = [np.tile(np.arange(len(lengths)), whole)]
        if frac > 0:
            docs.append(_fill(lengths, frac * lengths.sum(), rng))
        chosen = np.concatenate(docs)
        mixed[route] = int(lengths[chosen].sum())
        picks.append(np.stack([np.full(len(chosen), ri), chosen], axis=1))
    index = np.concatenate(picks)
    index = index[rng.permutation(len(index))]
    (out / "mix").mkdir(parents=True, exist_ok=True)
    np.save(out / "mix" / "index.npy", index.astype(np.int64))
    total = sum(mixed.values())
    target_total = sum(cfg.ratios[r] for r in route_names)
    manifest = {
        "routes": route_names,
        "index": "index.npy: rows of (route position in `routes`, document index in tokens/<route>/part_00000)",
        "target_ratio": {r: cfg.ratios[r] / target_total for r in route_names},
        "achieved_ratio": {r: mixed[r] / total for r in route_names},
        "available_tokens": available,
        "mixed_tokens": mixed,
        "repeats": {r: round(repeats[r], 4) for r in route_names},
        "documents": int(len(index)),
    }
    (out / "mix" / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest
