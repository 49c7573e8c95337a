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
import xxhash
from loguru import logger
from tqdm import tqdm

from moss_data.io.atomic import StageRun, config_hash, input_fingerprint
from moss_data.io.documents import document_files, iter_documents, routes_in
from moss_data.io.tokens import ShardWriter, TokenCorpus, token_dtype
from moss_data.tokens.config import MixConfig, TokenizeConfig
from moss_data.tokens.tokenizer import EOD, load_tokenizer, train_tokenizer


def _route_texts(docs_dir: Path, route: str, limit_chars: int):
    used = 0
    for d in iter_documents(docs_dir / route):
        if used >= limit_chars:
            return
        used += len(d["text"])
        yield d["text"]


def run_tokenize(docs_dir: Path, out: Path, cfg: TokenizeConfig) -> dict:
    """Trains the tokenizer (unless one is given) and encodes each route into its token shard. Each part is skipped
    when its manifest shows it was made from the same documents with the same settings."""
    routes = routes_in(docs_dir)
    if not routes:
        raise FileNotFoundError(f"tokenize: no routes under {docs_dir}")
    corpus = TokenCorpus(out)
    tok_path = Path(cfg.tokenizer_path) if cfg.tokenizer_path else _trained_tokenizer(docs_dir, routes, corpus, cfg)
    tok = load_tokenizer(tok_path)
    tok_hash = xxhash.xxh3_64_hexdigest(tok_path.read_bytes())
    eod = tok.token_to_id(EOD)
    dtype = token_dtype(tok.get_vocab_size())
    manifest = {"tokenizer": str(tok_path), "tokenizer_hash": tok_hash, "vocab_size": tok.get_vocab_size(), "routes": {}}
    for route in routes:
        shard_path = corpus.shard_path(route)
        files = document_files(docs_dir / route)
        run = StageRun(shard_path.with_suffix(".json"), tokenizer=tok_hash, input=input_fingerprint(files, docs_dir))
        meta = run.done()  # same documents, same tokenizer: done before
        if meta is None:
            meta = _tokenize_route(docs_dir / route, ShardWriter(shard_path, dtype, run.key), tok, eod, cfg.batch_size,
                                   desc=f"tokenize {route}")
        manifest["routes"][route] = meta
    corpus.write_manifest(manifest)
    return manifest


def _trained_tokenizer(docs_dir: Path, routes: list[str], corpus: TokenCorpus, cfg: TokenizeConfig) -> Path:
    """The corpus's own BPE, trained again only when its documents or settings changed."""
    files = document_files(docs_dir)
    settings = {"vocab_size": cfg.vocab_size, "train_chars_per_route": cfg.train_chars_per_route, "routes": routes}
    run = StageRun(corpus.tokenizer_path.with_name("manifest.json"), config=config_hash(settings),
                   input=input_fingerprint(files, docs_dir))
    if run.done() is None or not corpus.tokenizer_path.exists():
        logger.info(f"tokenize: training a {cfg.vocab_size}-token byte-level BPE on {routes}")
        texts = (t for r in routes for t in _route_texts(docs_dir, r, cfg.train_chars_per_route))
        train_tokenizer(texts, cfg.vocab_size, corpus.tokenizer_path)
        run.finish({"tokenizer": corpus.tokenizer_path.name})
    return corpus.tokenizer_path


def _tokenize_route(folder: Path, writer: ShardWriter, tok, eod: int, batch_size: int, desc: str) -> dict:
    """Encodes a route's documents in batches into ``writer``; writes the ``.uids`` file; returns the shard meta."""
    uids: list[str] = []
    docs = iter(tqdm(iter_documents(folder), desc=desc, unit="doc", leave=False))
    while batch := list(itertools.islice(docs, batch_size)):
        for d, enc in zip(batch, tok.encode_batch([d["text"] for d in batch]), strict=True):
            writer.add(enc.ids + [eod])
            uids.append(d["metadata"].get("doc_uid", d["id"]))
    writer.write_uids(uids)
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
    """The mix index over the token shards; skipped when the shards and the settings are those of the last mix."""
    corpus = TokenCorpus(out)
    shards = corpus.open_shards([r for r in cfg.ratios if r in corpus.routes()])
    run = StageRun(corpus.mix_manifest_path, config=config_hash(cfg),
                   shards=config_hash({r: s.meta.get("key") for r, s in shards.items()}))
    if (done := run.done()) is not None:
        return done
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
    total = sum(mixed.values())
    target_total = sum(cfg.ratios[r] for r in route_names)
    corpus.write_mix_index(index)  # before the manifest: a manifest always names a complete index
    return run.finish({
        "routes": route_names,
        "index": "index.npy: rows of (route position in `routes`, document index in tokens/<route>/part_00000)",
        "target_ratio": {r: cfg.ratios[r] / target_total for r in route_names},
        "achieved_ratio": {r: mixed[r] / total for r in route_names},
        "available_tokens": available,
        "mixed_tokens": mixed,
        "repeats": {r: round(repeats[r], 4) for r in route_names},
        "documents": int(len(index)),
    })
