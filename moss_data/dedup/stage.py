"""The dedup stage: clean routed shards in, deduplicated shards out, with a removal list checked for lineage.

Order: exact (normalized content hash) -> URL (web routes) -> decontamination (optional) -> near-dedup (MinHash LSH,
verified, per route or across the text routes). Each removal names its reason and, for duplicates, the kept
document. Output layout under ``<output_dir>/dedup``::

    removals.json                   the removal list, with the fingerprint of the input it was computed on
    kept/<route>/part_00000.jsonl.gz   kept documents; metadata doc_uid, dup_cluster (keeper uid), dup_cluster_size
    removed/<route>/part_00000.jsonl.gz removed documents; metadata dedup_reason, duplicate_of, similarity
    manifest.json                   input fingerprint, counts by route and reason, output files with sha256
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import orjson
import xxhash
from datatrove.data import Document
from datatrove.pipeline.writers import JsonlWriter
from loguru import logger
from pydantic import Field
from tqdm import tqdm

from moss_data.corpus.shards import iter_documents
from moss_data.dedup.clusters import resolve_clusters
from moss_data.dedup.lineage import RemovalList, doc_uid, file_sha256, input_fingerprint
from moss_data.dedup.minhash import LSHParams, MinHasher, candidate_pairs, verify_pairs
from moss_data.dedup.shingles import shingle_hashes, tokenize
from moss_data.recipe import StrictModel

WEB_ROUTES = ("en", "zh", "other")
_SPACES = re.compile(r"\s+")


class DecontaminationConfig(StrictModel):
    eval_sets: list[str] = Field(default_factory=list, description="JSONL (a 'text' field per line) or .txt files")
    ngram: int = Field(13, description="n-gram length in tokens (CJK characters count as tokens)")
    min_overlap: int = Field(1, description="documents sharing at least this many n-grams with an eval set go")


class DedupConfig(StrictModel):
    enabled: bool = True
    exact: bool = True
    url: bool = True
    near: bool = True
    scope: str = Field("route", pattern="^(route|text)$", description="route: each route alone; text: en+zh+other together")
    threshold: float = Field(0.8, gt=0, le=1)
    shingle_size: int = Field(5, ge=1, le=10)
    bands: int = 24
    rows: int = 5
    seed: int = 42
    verify: str = Field("exact", pattern="^(exact|signature)$", description="exact: shingle Jaccard; signature: estimate")
    decontaminate: DecontaminationConfig = DecontaminationConfig()


def normalized_text_hash(text: str) -> str:
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()
    return xxhash.xxh3_128_hexdigest(text)


_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|ref|source)$")


def normalize_url(url: str) -> str:
    parts = urlsplit(url.strip())
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query) if not _TRACKING.match(k)))
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower().removeprefix("www."), path, query, ""))


def _load(input_dir: Path) -> tuple[list[dict], list[Path]]:
    files = sorted(input_dir.glob("*/*.jsonl.gz"))
    docs = []
    for d in iter_documents(input_dir, "*/*.jsonl.gz"):
        d["metadata"]["doc_uid"] = doc_uid(d["metadata"].get("source", ""), d["id"])
        docs.append(d)
    docs.sort(key=lambda d: (d["metadata"]["route"], d["metadata"]["doc_uid"]))  # the stable order: keepers come first
    return docs, files


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


def compute_removals(docs: list[dict], fingerprint: str, cfg: DedupConfig) -> tuple[RemovalList, dict[str, dict]]:
    """Decides what goes. Returns the removal list and per kept uid its cluster metadata."""
    removals = RemovalList(input_fingerprint=fingerprint)
    clusters: dict[str, dict] = {}

    def remove(d: dict, reason: str, duplicate_of: str | None = None, similarity: float | None = None) -> None:
        removals.entries[d["metadata"]["doc_uid"]] = {
            "reason": reason, "duplicate_of": duplicate_of, "similarity": similarity, "route": d["metadata"]["route"]
        }

    alive = list(docs)
    if cfg.exact:
        first: dict[tuple[str, str], str] = {}
        survivors = []
        for d in tqdm(alive, desc="exact dedup", unit="doc", leave=False):
            scope = d["metadata"]["route"] if cfg.scope == "route" or d["metadata"]["route"] == "code" else "text"
            key = (scope, normalized_text_hash(d["text"]))
            if key in first:
                remove(d, "exact_duplicate", first[key], 1.0)
            else:
                first[key] = d["metadata"]["doc_uid"]
                survivors.append(d)
        alive = survivors
    if cfg.url:
        first_url: dict[str, str] = {}
        survivors = []
        for d in alive:
            url = d["metadata"].get("url")
            if d["metadata"]["route"] in WEB_ROUTES and url and not url.startswith("file:"):
                key = normalize_url(url)
                if key in first_url:
                    remove(d, "url_duplicate", first_url[key])
                    continue
                first_url[key] = d["metadata"]["doc_uid"]
            survivors.append(d)
        alive = survivors
    if cfg.decontaminate.eval_sets:
        grams = _eval_ngrams(cfg.decontaminate)
        survivors = []
        for d in tqdm(alive, desc="decontamination", unit="doc", leave=False):
            overlap = len(_ngram_hashes(d["text"], cfg.decontaminate.ngram) & grams)
            if overlap >= cfg.decontaminate.min_overlap:
                remove(d, "contaminated", None, float(overlap))
            else:
                survivors.append(d)
        alive = survivors
    if cfg.near:
        groups: dict[str, list[dict]] = defaultdict(list)
        for d in alive:
            route = d["metadata"]["route"]
            groups[route if cfg.scope == "route" or route == "code" else "text"].append(d)
        params = LSHParams(bands=cfg.bands, rows=cfg.rows, seed=cfg.seed)
        hasher = MinHasher(params)
        for group, members in groups.items():
            # exact verification keeps every shingle set in memory (~4 bytes per distinct shingle);
            # "signature" keeps only the signatures (num_perm x 4 bytes per document) and estimates Jaccard.
            shingles: list[np.ndarray] | None = [] if cfg.verify == "exact" else None
            signatures = np.zeros((len(members), params.num_perm), dtype=np.uint32)
            for k, d in enumerate(tqdm(members, desc=f"minhash {group}", unit="doc", leave=False)):
                sh = shingle_hashes(d["text"], d["metadata"]["route"], cfg.shingle_size)
                signatures[k] = hasher.signature(sh)
                if shingles is not None:
                    shingles.append(sh)
            pairs = candidate_pairs(signatures, params)
            verified = verify_pairs(pairs, cfg.threshold, shingles=shingles, signatures=signatures)
            decisions = resolve_clusters(len(members), verified, cfg.threshold, shingles, signatures)
            logger.info(f"near dedup {group}: {len(members)} docs, {len(pairs)} candidate pairs, {len(verified)} verified")
            for d, dec in zip(members, decisions):
                keeper_uid = members[dec.cluster]["metadata"]["doc_uid"]
                if dec.duplicate_of is not None:
                    remove(d, "near_duplicate", keeper_uid, dec.similarity)
                else:
                    clusters[d["metadata"]["doc_uid"]] = {"dup_cluster": keeper_uid, "dup_cluster_size": dec.cluster_size}
    return removals, clusters


def apply_removals(docs: list[dict], fingerprint: str, removals: RemovalList, clusters: dict, out: Path) -> Counter:
    removals.check_applies_to(fingerprint, {d["metadata"]["doc_uid"] for d in docs})
    counts: Counter = Counter()
    kept_w = JsonlWriter(str(out / "kept"), output_filename="${route}/part_${rank}.jsonl.gz")
    removed_w = JsonlWriter(str(out / "removed"), output_filename="${route}/part_${rank}.jsonl.gz")
    with kept_w, removed_w:
        for d in docs:
            meta = d["metadata"]
            uid = meta["doc_uid"]
            entry = removals.entries.get(uid)
            if entry:
                meta.update(dedup_reason=entry["reason"], duplicate_of=entry["duplicate_of"], similarity=entry["similarity"])
                removed_w.write(Document(text=d["text"], id=d["id"], metadata=meta), 0)
                counts[(meta["route"], entry["reason"])] += 1
            else:
                meta.update(clusters.get(uid, {"dup_cluster": uid, "dup_cluster_size": 1}))
                kept_w.write(Document(text=d["text"], id=d["id"], metadata=meta), 0)
                counts[(meta["route"], "kept")] += 1
    return counts


def run_dedup(input_dir: Path, output_dir: Path, cfg: DedupConfig) -> dict:
    """Runs the stage; skips the work when the manifest says it was done on this exact input."""
    output_dir.mkdir(parents=True, exist_ok=True)
    docs, files = _load(input_dir)
    if not docs:
        raise FileNotFoundError(f"dedup: no documents under {input_dir}/<route>/*.jsonl.gz; run the corpus stage first")
    fingerprint = input_fingerprint(files, input_dir, [d["metadata"]["doc_uid"] for d in docs])
    manifest_path = output_dir / "manifest.json"
    config_hash = xxhash.xxh3_64_hexdigest(cfg.model_dump_json())
    if manifest_path.exists():
        manifest = orjson.loads(manifest_path.read_bytes())
        if manifest.get("input_fingerprint") == fingerprint and manifest.get("config_hash") == config_hash:
            logger.info("dedup: already done on this input with this config")
            return manifest
    removals_path = output_dir / "removals.json"
    removals, clusters = compute_removals(docs, fingerprint, cfg)
    removals.save(removals_path)
    for sub in ("kept", "removed"):
        for old in (output_dir / sub).glob("*/*.jsonl.gz"):
            old.unlink()
    counts = apply_removals(docs, fingerprint, RemovalList.load(removals_path), clusters, output_dir)
    cluster_sizes = Counter(c["dup_cluster_size"] for c in clusters.values())
    manifest = {
        "input_fingerprint": fingerprint,
        "config_hash": config_hash,
        "input_documents": len(docs),
        "counts": [{"route": r, "outcome": o, "documents": n} for (r, o), n in sorted(counts.items())],
        "cluster_sizes": {str(k): v for k, v in sorted(cluster_sizes.items())},
        "outputs": {
            str(p.relative_to(output_dir)): file_sha256(p) for p in sorted(output_dir.glob("*/*/*.jsonl.gz"))
        },
    }
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    tmp.replace(manifest_path)
    return manifest
