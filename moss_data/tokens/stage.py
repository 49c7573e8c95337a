"""Tokenize the deduplicated documents into token shards, then mix routes to target token ratios: both as plans of
datatrove jobs (:mod:`moss_data.plan`) that the corpus chain runs on its executor (local, Slurm, Ray).

:func:`tokenize_plan`, three jobs, each after the one before:

1. ``tokenizer`` (1 task; left out when ``tokenize.tokenizer_path`` names one): trains the byte-level BPE on up to
   ``train_chars_per_route`` characters of each route and writes it atomically; skipped when its record shows the
   same documents and settings.
2. ``tokenize`` (N tasks): :class:`DocumentShareReader` (datatrove's ``JsonlReader``; task ``rank`` reads, of every
   route, a contiguous slice of its sorted ``<route>/*.jsonl.gz`` files) -> :class:`EncodeShards`, which encodes in
   batches and writes one token shard per route in its share, ``tokens/<route>/part_<rank>``. A route with at least
   N files has N shards; in rank order they hold its documents in file-name order, whatever N is. Each shard's meta
   is its completion record, keyed on the tokenizer's hash and the fingerprint of the task's files of that route:
   an unchanged shard is not rewritten, one without its meta is.
3. ``tokenize-manifest`` (1 task): removes shards no task of this run writes (left by a run with another task count
   or input), checks that every expected shard is complete and encoded with this tokenizer, copies a given tokenizer
   to ``tokenizer/tokenizer.json`` (the pretrainer reads it there) and writes ``tokens/manifest.json``.

:func:`mix_plan`, one job ``mix`` (1 task): per route a repeat factor ``target / available`` over all its shards:
whole passes over the route, then a seeded random subset of documents for the fraction; the result is an index of
(shard, document) rows in shuffled order (``mix/index.npy``; ``mix/manifest.json`` lists the shards) that the trainer
reads with the memory-mapped shards; nothing is copied. The manifest reports available and mixed tokens per route
and the achieved ratio.

Every step holds paths and configs only (a Slurm or Ray task unpickles it): the tokenizer is loaded in ``run()``.
Skipping done work is the steps' own (``StageRun``), so running a job again is always safe; :func:`run_tokenize`
and :func:`run_mix` run the plans here, for the stage on its own.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import xxhash
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader
from loguru import logger

from moss_data.io.atomic import StageRun, atomic_write, config_hash, input_fingerprint
from moss_data.io.documents import SHARD_PATTERN, document_files, iter_documents
from moss_data.io.storage import as_path, remove_tree, unlink
from moss_data.io.tokens import ShardWriter, TokenCorpus, TokenShard, shard_name, shard_rank, token_dtype
from moss_data.plan import Job, run_local
from moss_data.tokens.config import MixConfig, TokenizeConfig
from moss_data.tokens.tokenizer import EOD, load_tokenizer, train_tokenizer

# Bumped when token shards or the mix change for the same recipe: part of those jobs' key (moss_data.chain.run).
TOKENS_VERSION = 2

LOGS = "logs"  # <out>/logs/<job>: where run_tokenize / run_mix keep datatrove's logs (the chain passes its own)


# --- which task reads which files -------------------------------------------------------------------------------


def all_files(docs_dir: str | Path) -> list[str]:
    """The document folder's ``<route>/*.jsonl.gz`` files, relative to it, sorted (the order shards follow)."""
    root = as_path(docs_dir)
    return sorted(p.relative_to(root).as_posix() for p in document_files(root, SHARD_PATTERN))


def route_of(file: str) -> str:
    return file.split("/", 1)[0]


def by_route(files: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for f in files:
        grouped[route_of(f)].append(f)
    return dict(grouped)


def task_files(files: list[str], rank: int, world_size: int) -> list[str]:
    """Task ``rank``'s share: of every route, a contiguous slice of its sorted files (about 1/world_size of each
    route, so a route with at least ``world_size`` files has that many shards, and its shards in rank order hold
    its documents in file-name order)."""
    share = []
    for route_files in by_route(files).values():
        n = len(route_files)
        share += route_files[-(-rank * n // world_size) : -(-(rank + 1) * n // world_size)]  # ceil: low ranks first
    return share


def _require_files(docs_dir: str) -> list[str]:
    files = all_files(docs_dir)
    if not files:
        raise FileNotFoundError(f"tokenize: no document shards ({SHARD_PATTERN}) under {docs_dir}")
    return files


def tokenizer_file(cfg: TokenizeConfig, out_dir: str | Path) -> Path:
    """The tokenizer the shards are encoded with: the given one, or the one the ``tokenizer`` job trains."""
    return as_path(cfg.tokenizer_path) if cfg.tokenizer_path else TokenCorpus(as_path(out_dir)).tokenizer_path


def file_hash(path: Path) -> str:
    return xxhash.xxh3_64_hexdigest(as_path(path).read_bytes())


# --- job 1: the tokenizer ----------------------------------------------------------------------------------------


def _route_texts(docs_dir: Path, route: str, limit_chars: int):
    used = 0
    for d in iter_documents(docs_dir / route, SHARD_PATTERN.split("/", 1)[1]):
        if used >= limit_chars:
            return
        used += len(d["text"])
        yield d["text"]


class TrainTokenizer(PipelineStep):
    """Trains the corpus's own BPE, again only when its documents or settings changed."""

    name = "🔤 Train the tokenizer"
    type = "🔢 - TOKENIZE"

    def __init__(self, docs_dir: str, out_dir: str, cfg: TokenizeConfig):
        super().__init__()
        self.docs_dir, self.out_dir, self.cfg = str(docs_dir), str(out_dir), cfg

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        docs_dir, corpus, cfg = as_path(self.docs_dir), TokenCorpus(as_path(self.out_dir)), self.cfg
        files = _require_files(self.docs_dir)
        routes = sorted(by_route(files))
        settings = {"vocab_size": cfg.vocab_size, "train_chars_per_route": cfg.train_chars_per_route, "routes": routes}
        run = StageRun(corpus.tokenizer_manifest_path, config=config_hash(settings),
                       input=input_fingerprint([docs_dir / f for f in files], docs_dir))
        done = run.done()
        if done is None or not corpus.tokenizer_path.exists() or file_hash(corpus.tokenizer_path) != done.get("hash"):
            logger.info(f"tokenize: training a {cfg.vocab_size}-token byte-level BPE on {routes}")
            texts = (t for r in routes for t in _route_texts(docs_dir, r, cfg.train_chars_per_route))
            train_tokenizer(texts, cfg.vocab_size, corpus.tokenizer_path)
            run.finish({"tokenizer": corpus.tokenizer_path.name, "hash": file_hash(corpus.tokenizer_path)})
            self.stat_update("trained")
        else:
            logger.info(f"tokenize: {corpus.tokenizer_path} is up to date")
        return iter(())


# --- job 2: the token shards -------------------------------------------------------------------------------------


class DocumentShareReader(JsonlReader):
    """datatrove's ``JsonlReader`` over a document folder, task ``rank`` reading :func:`task_files` (of every route a
    contiguous slice of its sorted ``<route>/*.jsonl.gz`` files; datatrove's own shares are round-robin over all
    files, which would interleave a route's files across shards). ``metadata.route`` of each document is its folder
    (and must agree where the document states one)."""

    name = "🐿 Jsonl (document folder)"

    def __init__(self, docs_dir: str):
        super().__init__(str(docs_dir), glob_pattern=SHARD_PATTERN, add_file_path=False)
        self.docs_dir = str(docs_dir)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        for file in task_files(_require_files(self.docs_dir), rank, world_size):
            route = route_of(file)
            self.stat_update("input_files")
            for doc in self.read_file(file):
                if doc.metadata.setdefault("route", route) != route:
                    raise ValueError(f"{file}: document {doc.id} says route {doc.metadata['route']!r} but lies in "
                                     f"the {route!r} folder")
                self.update_doc_stats(doc)
                yield doc


class EncodeShards(PipelineStep):
    """Encodes the task's documents in batches into one token shard per route of its files,
    ``tokens/<route>/part_<rank>`` (+ ``.uids``); a shard already made from the same files with the same tokenizer
    is kept (and its documents are not encoded again)."""

    name = "🔢 Token shards"
    type = "🔢 - TOKENIZE"

    def __init__(self, docs_dir: str, out_dir: str, cfg: TokenizeConfig):
        super().__init__()
        self.docs_dir, self.out_dir, self.cfg = str(docs_dir), str(out_dir), cfg

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        docs_dir, corpus = as_path(self.docs_dir), TokenCorpus(as_path(self.out_dir))
        share = by_route(task_files(_require_files(self.docs_dir), rank, world_size))
        if not share:
            return iter(())  # more tasks than files: nothing to do
        tok_path = tokenizer_file(self.cfg, self.out_dir)
        tok = load_tokenizer(tok_path)  # here, not in __init__: the step is pickled to its task
        tok_hash, eod, dtype = file_hash(tok_path), tok.token_to_id(EOD), token_dtype(tok.get_vocab_size())
        writers: dict[str, ShardWriter] = {}
        for route, files in share.items():
            run = StageRun(corpus.shard_path(route, rank).with_suffix(".json"), tokenizer=tok_hash,
                           input=input_fingerprint([docs_dir / f for f in files], docs_dir))
            if run.done() is None:
                writers[route] = ShardWriter(corpus.shard_path(route, rank), dtype, run.key)
            else:
                self.stat_update("shards_kept")
        if not writers:  # every shard of this task is done: the reader is never started
            return iter(())
        batches: dict[str, list] = {r: [] for r in writers}
        uids: dict[str, list[str]] = {r: [] for r in writers}

        def flush(route: str) -> None:
            batch, batches[route] = batches[route], []
            with self.track_time(unit="batch"):
                encoded = tok.encode_batch([d.text for d in batch])
            for doc, enc in zip(batch, encoded, strict=True):
                writers[route].add(enc.ids + [eod])
                uids[route].append(doc.metadata.get("doc_uid", doc.id))
                self.stat_update("tokens", value=len(enc.ids) + 1)

        for doc in data or ():
            route = doc.metadata["route"]
            if route in writers:  # documents of a kept shard are read past
                batches[route].append(doc)
                if len(batches[route]) >= self.cfg.batch_size:
                    flush(route)
        for route, writer in writers.items():
            flush(route)
            writer.write_uids(uids[route])
            meta = writer.close()
            self.stat_update("shards_written")
            logger.info(f"tokenize: {writer.path}: {meta['documents']} documents, {meta['tokens']} tokens")
        return iter(())


# --- job 3: the manifest -----------------------------------------------------------------------------------------


def expected_shards(files: list[str], tasks: int) -> dict[str, list[int]]:
    """Per route, the ranks of the tasks that write one of its shards."""
    expected: dict[str, list[int]] = defaultdict(list)
    for rank in range(tasks):
        for route in by_route(task_files(files, rank, tasks)):
            expected[route].append(rank)
    return dict(expected)


class TokenManifest(PipelineStep):
    """Removes shards this run does not write, checks the others are complete and made with this tokenizer, and
    writes ``tokens/manifest.json`` (per route: its shards in order, documents and tokens)."""

    name = "📒 Token manifest"
    type = "🔢 - TOKENIZE"

    def __init__(self, docs_dir: str, out_dir: str, cfg: TokenizeConfig, tasks: int):
        super().__init__()
        self.docs_dir, self.out_dir, self.cfg, self.tasks = str(docs_dir), str(out_dir), cfg, tasks

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        corpus = TokenCorpus(as_path(self.out_dir))
        expected = expected_shards(_require_files(self.docs_dir), self.tasks)
        if corpus.tokens_dir.is_dir():
            for folder in sorted(p for p in corpus.tokens_dir.iterdir() if p.is_dir()):
                for name in corpus.shard_names(folder.name):
                    if shard_rank(name) not in expected.get(folder.name, []):
                        logger.info(f"tokenize: removing {folder.name}/{name}, not part of this run's shards")
                        corpus.remove_shard(folder.name, name)
                if not any(folder.iterdir()):
                    remove_tree(folder)
        tok_path = tokenizer_file(self.cfg, self.out_dir)
        tok = load_tokenizer(tok_path)
        tok_hash = file_hash(tok_path)
        if str(tok_path) != str(corpus.tokenizer_path):  # a given tokenizer: copied in (self-contained run)
            unlink(corpus.tokenizer_manifest_path)  # the copy is not a trained one
            if not corpus.tokenizer_path.exists() or file_hash(corpus.tokenizer_path) != tok_hash:
                atomic_write(corpus.tokenizer_path, tok_path.read_bytes())
        own = str(tok_path) == str(corpus.tokenizer_path)  # the run's own: named relative to it (same bytes anywhere)
        manifest = {"tokenizer": corpus.relative(tok_path) if own else str(tok_path), "tokenizer_hash": tok_hash, "vocab_size": tok.get_vocab_size(),
                    "tasks": self.tasks, "routes": {}}
        for route, ranks in sorted(expected.items()):
            shards = []
            for r in ranks:
                shard = TokenShard.open(corpus.shard_path(route, r))  # raises if a task left it incomplete
                if shard.meta["key"].get("tokenizer") != tok_hash:
                    raise ValueError(f"token shard {route}/{shard_name(r)} was encoded with another tokenizer: "
                                     "rerun the tokenize job")
                shards.append({"name": shard_name(r), "documents": shard.meta["documents"],
                               "tokens": shard.meta["tokens"], "key": shard.meta["key"]})
            manifest["routes"][route] = {"shards": shards, "dtype": token_dtype(tok.get_vocab_size()).name,
                                         "documents": sum(s["documents"] for s in shards),
                                         "tokens": sum(s["tokens"] for s in shards)}
        corpus.write_manifest(manifest)
        return iter(())


def tokenize_plan(docs_dir: str, out_dir: str, cfg: TokenizeConfig, tasks: int) -> list[Job]:
    """The tokenize stage as jobs: tokenizer (unless given), tokenize (``tasks`` tasks), manifest. Nothing is read
    here: on Slurm the plan is made before the documents exist."""
    jobs = [] if cfg.tokenizer_path else [Job("tokenizer", [TrainTokenizer(docs_dir, out_dir, cfg)], 1)]
    jobs.append(Job("tokenize", [DocumentShareReader(docs_dir), EncodeShards(docs_dir, out_dir, cfg)], tasks))
    jobs.append(Job("tokenize-manifest", [TokenManifest(docs_dir, out_dir, cfg, tasks)], 1))
    return jobs


# --- the mix -----------------------------------------------------------------------------------------------------


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


def make_mix(out_dir: str | Path, cfg: MixConfig) -> dict:
    """The mix index over every shard of the mixed routes; skipped when the shards and the settings are those of the
    last mix."""
    corpus = TokenCorpus(as_path(out_dir))
    present = corpus.routes()
    candidates = {r: corpus.open_route(r) for r in sorted(cfg.ratios) if r in present}
    if corpus.manifest_path.exists():  # what the tokenize stage finished with; anything else is a stale shard
        listed = {r: [s["name"] for s in v.get("shards", [])] for r, v in corpus.manifest()["routes"].items()}
        for r, t in candidates.items():
            if [s.path.name for s in t.shards] != listed.get(r):
                raise ValueError(f"mix: the complete shards of {r} ({[s.path.name for s in t.shards]}) are not those "
                                 f"of {corpus.manifest_path} ({listed.get(r)}): rerun the tokenize stage")
    run = StageRun(corpus.mix_manifest_path, config=config_hash(cfg), shards=config_hash(
        [{"route": r, "name": s.path.name, "key": s.meta.get("key")} for r, t in candidates.items() for s in t.shards]))
    if (done := run.done()) is not None:
        return done
    available = {r: int(t.lengths().sum()) for r, t in candidates.items()}
    repeats = plan_mix(available, cfg)
    rng = np.random.default_rng(cfg.seed)
    route_names = sorted(repeats)
    shard_list, picks, mixed = [], [], {}
    for route in route_names:
        tokens = candidates[route]
        lengths = tokens.lengths()
        whole, frac = math.floor(repeats[route]), repeats[route] % 1
        docs = [np.tile(np.arange(len(lengths)), whole)]
        if frac > 0:
            docs.append(_fill(lengths, frac * lengths.sum(), rng))
        chosen = np.concatenate(docs).astype(np.int64)
        mixed[route] = int(lengths[chosen].sum())
        # route document -> (shard position in the manifest's list, document index in that shard)
        counts = np.array([len(s) for s in tokens.shards], dtype=np.int64)
        ends = np.cumsum(counts)
        local_shard = np.searchsorted(ends, chosen, side="right")
        picks.append(np.stack([len(shard_list) + local_shard, chosen - (ends - counts)[local_shard]], axis=1))
        shard_list += [{"route": route, "name": s.path.name, "documents": len(s), "tokens": int(s.meta["tokens"]),
                        "key": s.meta.get("key")} for s in tokens.shards]
    index = np.concatenate(picks)
    index = index[rng.permutation(len(index))]
    total = sum(mixed.values())
    target_total = sum(cfg.ratios[r] for r in route_names)
    corpus.write_mix_index(index)  # before the manifest: a manifest always names a complete index
    return run.finish({
        "routes": route_names,
        "shards": shard_list,
        "index": "index.npy: rows of (shard position in `shards`, document index in that shard)",
        "target_ratio": {r: cfg.ratios[r] / target_total for r in route_names},
        "achieved_ratio": {r: mixed[r] / total for r in route_names},
        "available_tokens": available,
        "mixed_tokens": mixed,
        "repeats": {r: round(repeats[r], 4) for r in route_names},
        "documents": int(len(index)),
    })


class MixStep(PipelineStep):
    name = "🥣 Mix"
    type = "🔢 - TOKENIZE"

    def __init__(self, out_dir: str, cfg: MixConfig):
        super().__init__()
        self.out_dir, self.cfg = str(out_dir), cfg

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        manifest = make_mix(self.out_dir, self.cfg)
        self.stat_update("documents", value=manifest["documents"])
        return iter(())


def mix_plan(out_dir: str, cfg: MixConfig) -> list[Job]:
    """The mix as one job of one task (reads every shard's lengths, writes one index)."""
    return [Job("mix", [MixStep(out_dir, cfg)], 1)]


# --- here, on the local executor ---------------------------------------------------------------------------------


def _run_here(jobs: list[Job], out: Path) -> None:
    """Runs the jobs on datatrove's local executor under ``<out>/logs/<job>``. Completion markers are cleared first:
    the steps skip done work themselves (keyed on config and input), and a marker would hide a changed input."""
    logs = as_path(out) / LOGS
    for job in jobs:
        remove_tree(logs / job.name / "completions")
    run_local(jobs, logs)


def run_tokenize(docs_dir: Path, out: Path, cfg: TokenizeConfig, tasks: int = 2) -> dict:
    """Runs :func:`tokenize_plan` here; returns ``tokens/manifest.json``."""
    _require_files(str(docs_dir))
    _run_here(tokenize_plan(str(docs_dir), str(out), cfg, tasks), out)
    return TokenCorpus(as_path(out)).manifest()


def run_mix(out: Path, cfg: MixConfig) -> dict:
    """Runs :func:`mix_plan` here; returns ``mix/manifest.json``."""
    _run_here(mix_plan(str(out), cfg), out)
    return TokenCorpus(as_path(out)).mix_manifest()
