"""The dedup stage: clean routed shards in, deduplicated shards out, with a removal list checked for lineage; as a plan
of datatrove jobs (:func:`dedup_plan`) that the chain runs on a local, Slurm or Ray executor, each job after the one
before it, or here with :func:`run_dedup`.

Duplicates, all found through one bucket machinery (:mod:`moss_data.dedup.minhash`): exact (normalized content
hash), URL (normalized, web routes), near (MinHash LSH on language-aware shingles, verified on exact Jaccard or the
signature estimate), per route or across the text routes; plus optional decontamination against eval sets. Decisions
(:mod:`moss_data.dedup.clusters`) never chain: a document goes only if it is itself a duplicate of a kept document.

Jobs (``tasks`` = N):

1. ``dedup-signatures`` (N): per document keys, shingle sets, signature; bucket keys in N partitions.
2. ``dedup-candidates`` (N): per partition, buckets -> candidate pairs -> verified edges.
3. ``dedup-clusters`` (1): decisions from the edges -> the removal list (with the input's fingerprint).
4. ``dedup-apply`` (N): the removal list applied to the input (lineage checked), one JsonlWriter.
5. ``dedup-finalize`` (1): the manifest; the work folder goes.

Output layout under the stage's folder::

    kept/<route>/part_<rank>.jsonl.gz     kept documents; metadata doc_uid, dup_cluster (own uid), dup_cluster_size
    removed/<route>/part_<rank>.jsonl.gz  removed documents; metadata dedup_reason, duplicate_of, similarity
    removals/                             the removal list (rows.bin, meta.json: input fingerprint and file table)
    manifest.json                         input documents, counts by route and outcome, cluster sizes, outputs + sha256
    work/                                 the jobs' work files, while the stage runs

Memory per task follows its share, never the corpus: a signatures task flushes as it goes (constant); a candidates
task holds 8 bytes per bucket key of its partition (26 keys per document), then only the bucketed documents and
their distinct pairs; the clusters task holds the documents that have an edge or are contaminated (~100 bytes per
edge); an apply task the removal rows of its files (30 bytes each). Measured peak resident memory, 5k -> 40k
documents, 2 tasks: signatures, apply and finalize flat; candidates ~0.5 KB per document of its partition (the
single-process stage before: ~2.4 KB per document of the corpus).
"""

from __future__ import annotations

from pathlib import Path

from moss_data.io.storage import as_path

from datatrove.io import get_datafolder
from datatrove.pipeline.writers import JsonlWriter
from loguru import logger

from moss_data.dedup.apply import OUTCOME_KEY, ApplyRemovals
from moss_data.dedup.candidates import FindDuplicatePairs
from moss_data.dedup.clusters import ResolveClusters
from moss_data.dedup.config import DedupConfig
from moss_data.dedup.finalize import FinalizeDedup, read_manifest, stage_key
from moss_data.dedup.lineage import RemovalList, folder_fingerprint, input_files
from moss_data.dedup.reader import ShardReader
from moss_data.dedup.signatures import ComputeSignatures
from moss_data.io.atomic import config_hash
from moss_data.plan import Job, run_local


# Bumped when the dedup stage's outputs change for the same recipe: part of its jobs' key (moss_data.chain.run).
DEDUP_VERSION = 2


def kept_dir(output_dir: Path | str) -> Path:
    """The document folder of kept documents in the stage's output folder."""
    return as_path(output_dir) / "kept"


def removed_dir(output_dir: Path | str) -> Path:
    """The document folder of removed documents, each with ``dedup_reason`` and ``duplicate_of``."""
    return as_path(output_dir) / "removed"


def manifest_path(output_dir: Path | str) -> Path:
    """The stage's completion record: counts by route and outcome, cluster sizes, output files (see StageRun)."""
    return as_path(output_dir) / "manifest.json"


KEPT, REMOVED, MANIFEST = kept_dir("").name, removed_dir("").name, manifest_path("").name
OUTPUT_FILENAME = f"${{{OUTCOME_KEY}}}/${{route}}/part_${{rank}}.jsonl.gz"  # kept/<route>/..., removed/<route>/...


def _join(folder: str, name: str) -> str:
    """``folder/name`` for a local path or an fsspec URL (``s3://...``; pathlib would fold the ``//``)."""
    return f"{str(folder).rstrip('/')}/{name}"


def work_dir(output_dir: str) -> str:
    return _join(output_dir, "work")


def removals_dir(output_dir: str) -> str:
    return _join(output_dir, "removals")


def dedup_plan(input_dir: str, output_dir: str, cfg: DedupConfig, tasks: int) -> list[Job]:
    """The stage as datatrove jobs, to run in order. ``input_dir``: a document folder (``<route>/*.jsonl.gz``);
    paths may be fsspec URLs. Every task of a sharded job reads the same share of files (r, r + tasks, ...)."""
    if tasks < 1:
        raise ValueError(f"dedup: tasks must be >= 1, got {tasks}")
    for spec in cfg.decontaminate.eval_sets:  # fail now, not in a task
        if "://" not in spec and not Path(spec).is_file():
            raise FileNotFoundError(f"decontaminate.eval_sets: {spec} not found")
    input_dir, output_dir = str(input_dir), str(output_dir)
    work, removals = work_dir(output_dir), removals_dir(output_dir)
    return [
        Job("dedup-signatures", [ShardReader(input_dir), ComputeSignatures(input_dir, work, cfg, partitions=tasks)],
            tasks),
        Job("dedup-candidates", [FindDuplicatePairs(work, cfg, signature_tasks=tasks)], tasks),
        Job("dedup-clusters", [ResolveClusters(work, output_dir, removals, cfg, signature_tasks=tasks,
                                               candidate_tasks=tasks, clear=[MANIFEST, KEPT, REMOVED])], 1),
        Job("dedup-apply", [ShardReader(input_dir), ApplyRemovals(input_dir, removals, work, KEPT, REMOVED),
                            JsonlWriter(output_dir, output_filename=OUTPUT_FILENAME)], tasks),
        Job("dedup-finalize", [FinalizeDedup(output_dir, work, removals, cfg, tasks, outputs=[KEPT, REMOVED],
                                             manifest=MANIFEST)], 1),
    ]


def _logging_root(output_dir: str, cfg: DedupConfig, fingerprint: str) -> str:
    # keyed on the input too: datatrove skips tasks with completion markers, which must not outlive their input
    return _join(output_dir, f"logs-{config_hash(cfg)}-{fingerprint[:12]}")


def run_dedup(input_dir: Path | str, output_dir: Path | str, cfg: DedupConfig, tasks: int = 2) -> dict:
    """Runs the stage's plan here (datatrove's local executor); skips it when the manifest says it was done on this
    exact input with this config. Returns the manifest."""
    input_dir, output_dir = str(input_dir), str(output_dir)
    source = get_datafolder(input_dir)
    if not input_files(source):
        raise FileNotFoundError(f"dedup: no shards under {input_dir}/<route>/*.jsonl.gz; run the corpus stage first")
    fingerprint = folder_fingerprint(source)
    key = stage_key(cfg, fingerprint)
    if (manifest := read_manifest(output_dir, MANIFEST, key)) is not None:
        logger.info("dedup: already done on this input with this config")
        return manifest
    run_local(dedup_plan(input_dir, output_dir, cfg, tasks), logging_root=_logging_root(output_dir, cfg, fingerprint))
    manifest = read_manifest(output_dir, MANIFEST, key)
    if manifest is None:
        raise RuntimeError(f"dedup: the plan ran but {output_dir}/{MANIFEST} is not this run's (did the input change "
                           "while it ran?)")
    return manifest


def compute_removals(input_dir: Path | str, output_dir: Path | str, cfg: DedupConfig, tasks: int = 2) -> RemovalList:
    """Runs the plan's first three jobs (signatures, candidates, clusters) and returns the removal list."""
    input_dir, output_dir = str(input_dir), str(output_dir)
    root = _logging_root(output_dir, cfg, folder_fingerprint(input_dir))
    run_local(dedup_plan(input_dir, output_dir, cfg, tasks)[:3], logging_root=root)
    return RemovalList.load(removals_dir(output_dir))


def apply_removals(input_dir: Path | str, output_dir: Path | str, removals: RemovalList, cfg: DedupConfig,
                   tasks: int = 2) -> None:
    """Saves ``removals`` as the stage's removal list and runs the plan's apply job (which checks its lineage)."""
    input_dir, output_dir = str(input_dir), str(output_dir)
    removals.save(removals_dir(output_dir))
    root = _join(output_dir, f"logs-apply-{removals.input_fingerprint[:12]}-{len(removals.rows)}")
    run_local([dedup_plan(input_dir, output_dir, cfg, tasks)[3]], logging_root=root)
