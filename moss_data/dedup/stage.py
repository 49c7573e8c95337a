"""The dedup stage: clean routed shards in, deduplicated shards out, with a removal list checked for lineage.

Order: exact (normalized content hash) -> URL (web routes) -> decontamination (optional) -> near-dedup (MinHash LSH,
verified, per route or across the text routes). Each removal names its reason and, for duplicates, the kept
document. Output layout under ``<output_dir>/dedup``::

    removals.json                   the removal list, with the fingerprint of the input it was computed on

Memory: the stage streams the input three times (scan; shingles of near-duplicate candidates only; write) and
holds per document its key and signature (~500 bytes), plus the shingle sets of candidate documents.
    kept/<route>/part_00000.jsonl.gz   kept documents; metadata doc_uid, dup_cluster (keeper uid), dup_cluster_size
    removed/<route>/part_00000.jsonl.gz removed documents; metadata dedup_reason, duplicate_of, similarity
    manifest.json                   input fingerprint, counts by route and reason, output files with sha256
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import orjson
import xxhash
from datatrove.data import Document
from datatrove.pipeline.writers import JsonlWriter
from loguru import logger
from tqdm import tqdm

from moss_data.dedup.config import DecontaminationConfig, DedupConfig
from moss_data.io.atomic import StageRun, atomic_folder, config_hash, file_sha256, input_fingerprint
from moss_data.io.documents import SHARD_PATTERN, document_files, iter_documents, route_filename
from moss_data.dedup.clusters import resolve_clusters
from moss_data.dedup.lineage import LineageError, RemovalList, doc_uid
from moss_data.dedup.minhash import candidate_pairs, verify_pairs
from moss_data.text.minhash import LSHParams, MinHasher
from moss_data.text.shingles import shingle_hashes, tokenize

WEB_ROUTES = ("en", "zh", "other")
_SPACES = re.compile(r"\s+")


def kept_dir(output_dir: Path) -> Path:
    """The document folder of kept documents in the stage's output folder."""
    return Path(output_dir) / "kept"


def removed_dir(output_dir: Path) -> Path:
    """The document folder of removed documents, each with ``dedup_reason`` and ``duplicate_of``."""
    return Path(output_dir) / "removed"


def manifest_path(output_dir: Path) -> Path:
    """The stage's completion record: counts by route and outcome, cluster sizes, output files (see StageRun)."""
    return Path(output_dir) / "manifest.json"


def normalized_text_hash(text: str) -> str:
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()
    return xxhash.xxh3_128_hexdigest(text)


_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|ref|source)$")


def normalize_url(url: str) -> str:
    parts = urlsplit(url.strip())
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query) if not _TRACKING.match(k)))
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower().removeprefix("www."), path, query, ""))


@dataclass(slots=True)
class DocKey:
    """What the decisions need about a document, without its text (the stage streams texts, never holds them)."""

    uid: str
    route: str
    url: str | None
    text_hash: str
    contamination: int = 0


@dataclass
class Scan:
    """One streaming pass over the input: per document its key and MinHash signature (``num_perm`` x 4 bytes)."""

    keys: list[DocKey]
    signatures: np.ndarray
    fingerprint: str


def _input_files(input_dir: Path) -> list[Path]:
    return document_files(input_dir, SHARD_PATTERN)


def _documents(input_dir: Path):
    """The input documents in file order, each with its stable ``doc_uid`` set."""
    for d in iter_documents(input_dir, SHARD_PATTERN):
        d["metadata"]["doc_uid"] = doc_uid(d["metadata"].get("source", ""), d["id"])
        yield d


def scan(input_dir: Path, cfg: DedupConfig, fingerprint: str | None = None) -> Scan:
    """``fingerprint``: the input's, when the caller has already hashed the files."""
    files = _input_files(input_dir)
    hasher = MinHasher(_lsh_params(cfg))
    grams = _eval_ngrams(cfg.decontaminate) if cfg.decontaminate.eval_sets else None
    keys, signatures = [], []
    for d in tqdm(_documents(input_dir), desc="dedup scan", unit="doc", leave=False):
        meta = d["metadata"]
        key = DocKey(uid=meta["doc_uid"], route=meta["route"], url=meta.get("url"), text_hash=normalized_text_hash(d["text"]))
        if grams is not None:
            key.contamination = len(_ngram_hashes(d["text"], cfg.decontaminate.ngram) & grams)
        keys.append(key)
        signatures.append(hasher.signature(shingle_hashes(d["text"], key.route, cfg.shingle_size)))
    sig_array = np.stack(signatures) if signatures else np.zeros((0, hasher.params.num_perm), dtype=np.uint32)
    return Scan(keys=keys, signatures=sig_array, fingerprint=fingerprint or input_fingerprint(files, input_dir))


def _lsh_params(cfg: DedupConfig) -> LSHParams:
    return LSHParams(bands=cfg.bands, rows=cfg.rows, seed=cfg.seed)


def _eval_ngrams(cfg: DecontaminationConfig) -> set[int]:
    grams: set[int] = set()
    for path in map(Path, cfg.eval_sets):
        if not path.is_file():
            raise FileNotFoundError(f"decontaminate.eval_sets: {path} not found")
        if path.suffix == ".jsonl":
            texts = [orjson.loads(line).get("text", "") for line in path.read_bytes().splitlines() if line.strip()]
        else:
            texts = path.read_text(encoding="utf-8").splitlines()
        for text in texts:
            grams.update(_ngram_hashes(text, cfg.ngram))
    return grams


def _ngram_hashes(text: str, n: int) -> set[int]:
    tokens = tokenize(text, "zh")  # CJK characters and words: one tokenizer for every language here
    return {xxhash.xxh3_64_intdigest(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


def compute_removals(input_dir: Path, sc: Scan, cfg: DedupConfig) -> tuple[RemovalList, dict[str, dict]]:
    """Decides what goes, in the stable order (route, doc_uid): the first of a duplicate set is kept. Reads the
    input again only for the documents in near-duplicate candidate pairs (their shingles, for exact verification).
    Returns the removal list and, per kept uid, its cluster metadata."""
    removals = RemovalList(input_fingerprint=sc.fingerprint)
    clusters: dict[str, dict] = {}
    keys = sc.keys

    def remove(i: int, reason: str, duplicate_of: str | None = None, similarity: float | None = None) -> None:
        removals.entries[keys[i].uid] = {
            "reason": reason, "duplicate_of": duplicate_of, "similarity": similarity, "route": keys[i].route
        }

    def scope(i: int) -> str:
        return keys[i].route if cfg.scope == "route" or keys[i].route == "code" else "text"

    alive = sorted(range(len(keys)), key=lambda i: (keys[i].route, keys[i].uid))
    if cfg.exact:
        first: dict[tuple[str, str], str] = {}
        survivors = []
        for i in alive:
            k = (scope(i), keys[i].text_hash)
            if k in first:
                remove(i, "exact_duplicate", first[k], 1.0)
            else:
                first[k] = keys[i].uid
                survivors.append(i)
        alive = survivors
    if cfg.url:
        first_url: dict[str, str] = {}
        survivors = []
        for i in alive:
            url = keys[i].url
            if keys[i].route in WEB_ROUTES and url and not url.startswith("file:"):
                k = normalize_url(url)
                if k in first_url:
                    remove(i, "url_duplicate", first_url[k])
                    continue
                first_url[k] = keys[i].uid
            survivors.append(i)
        alive = survivors
    if cfg.decontaminate.eval_sets:
        survivors = []
        for i in alive:
            if keys[i].contamination >= cfg.decontaminate.min_overlap:
                remove(i, "contaminated", None, float(keys[i].contamination))
            else:
                survivors.append(i)
        alive = survivors
    if cfg.near:
        groups: dict[str, list[int]] = defaultdict(list)
        for i in alive:
            groups[scope(i)].append(i)
        params = _lsh_params(cfg)
        plans = {g: candidate_pairs(sc.signatures[members], params) for g, members in groups.items()}
        shingles_of: dict[int, np.ndarray] = {}
        if cfg.verify == "exact":  # a second pass, keeping shingles of candidate documents only
            wanted = {groups[g][a] for g, pairs in plans.items() for pair in pairs for a in pair}
            wanted_uids = {keys[i].uid: i for i in wanted}
            for d in _documents(input_dir):
                i = wanted_uids.get(d["metadata"]["doc_uid"])
                if i is not None:
                    shingles_of[i] = shingle_hashes(d["text"], keys[i].route, cfg.shingle_size)
        for group, members in groups.items():
            local_shingles = None
            if cfg.verify == "exact":
                empty = np.zeros(0, dtype=np.uint64)
                local_shingles = [shingles_of.get(i, empty) for i in members]
            signatures = sc.signatures[members]
            verified = verify_pairs(plans[group], cfg.threshold, shingles=local_shingles, signatures=signatures)
            decisions = resolve_clusters(len(members), verified, cfg.threshold, local_shingles, signatures)
            logger.info(
                f"near dedup {group}: {len(members)} docs, {len(plans[group])} candidate pairs, {len(verified)} verified"
            )
            for i, dec in zip(members, decisions):
                keeper_uid = keys[members[dec.cluster]].uid
                if dec.duplicate_of is not None:
                    remove(i, "near_duplicate", keeper_uid, dec.similarity)
                else:
                    clusters[keys[i].uid] = {"dup_cluster": keeper_uid, "dup_cluster_size": dec.cluster_size}
    return removals, clusters


def apply_removals(input_dir: Path, removals: RemovalList, clusters: dict, out: Path) -> Counter:
    """Streams the input into kept/ and removed/. Refuses (LineageError) a removal list computed on other input;
    outputs appear only once every document was written (built in a temporary folder, then moved)."""
    removals.check_applies_to(input_fingerprint(_input_files(input_dir), input_dir))
    counts: Counter = Counter()
    seen: set[str] = set()
    # Both folders are built beside their targets and renamed into place only when every document was written.
    with atomic_folder(kept_dir(out)) as kept_tmp, atomic_folder(removed_dir(out)) as removed_tmp:
        kept_w = JsonlWriter(str(kept_tmp), output_filename=route_filename("part"))
        removed_w = JsonlWriter(str(removed_tmp), output_filename=route_filename("part"))
        with kept_w, removed_w:
            for d in tqdm(_documents(input_dir), desc="dedup write", unit="doc", leave=False):
                meta = d["metadata"]
                uid = meta["doc_uid"]
                seen.add(uid)
                entry = removals.entries.get(uid)
                if entry:
                    meta.update(dedup_reason=entry["reason"], duplicate_of=entry["duplicate_of"],
                                similarity=entry["similarity"])
                    removed_w.write(Document(text=d["text"], id=d["id"], metadata=meta), 0)
                    counts[(meta["route"], entry["reason"])] += 1
                else:
                    meta.update(clusters.get(uid, {"dup_cluster": uid, "dup_cluster_size": 1}))
                    kept_w.write(Document(text=d["text"], id=d["id"], metadata=meta), 0)
                    counts[(meta["route"], "kept")] += 1
        unknown = [uid for uid in removals.entries if uid not in seen]
        if unknown:
            raise LineageError(f"{len(unknown)} removal(s) name documents not in this input, e.g. {unknown[:3]}")
    return counts


def run_dedup(input_dir: Path, output_dir: Path, cfg: DedupConfig) -> dict:
    """Runs the stage; skips the work when its manifest says it was done on this exact input and config."""
    output_dir.mkdir(parents=True, exist_ok=True)
    files = _input_files(input_dir)
    if not files:
        raise FileNotFoundError(f"dedup: no shards under {input_dir}/<route>/*.jsonl.gz; run the corpus stage first")
    fingerprint = input_fingerprint(files, input_dir)
    run = StageRun(manifest_path(output_dir), config=config_hash(cfg), input=fingerprint)
    if (manifest := run.done()) is not None:
        logger.info("dedup: already done on this input with this config")
        return manifest
    sc = scan(input_dir, cfg, fingerprint)
    removals_path = output_dir / "removals.json"
    removals, clusters = compute_removals(input_dir, sc, cfg)
    removals.save(removals_path)
    counts = apply_removals(input_dir, RemovalList.load(removals_path), clusters, output_dir)
    cluster_sizes = Counter(c["dup_cluster_size"] for c in clusters.values())
    return run.finish({
        "input_documents": len(sc.keys),
        "counts": [{"route": r, "outcome": o, "documents": n} for (r, o), n in sorted(counts.items())],
        "cluster_sizes": {str(k): v for k, v in sorted(cluster_sizes.items())},
        "outputs": {str(p.relative_to(output_dir)): file_sha256(p) for p in document_files(output_dir, "*/*/*.jsonl.gz")},
    })
