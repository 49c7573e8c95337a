"""Job 5 of the dedup plan (one task): the stage's manifest (counts by route and outcome from the apply tasks, cluster
sizes from the removal list, every output file with its sha256), keyed on config hash + input fingerprint
(:class:`moss_data.io.atomic.StageRun`), written last; then the work folder goes."""

from __future__ import annotations

from collections import Counter

from datatrove.data import DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep

from moss_data.dedup.candidates import read_signature_metas
from moss_data.dedup.config import DedupConfig
from moss_data.dedup.lineage import KEPT, ROW, ROWS_FILE, RemovalList, file_sha256
from moss_data.dedup.workfiles import apply_file, read_chunks, read_json
from moss_data.io.atomic import StageRun, config_hash
from moss_data.io.storage import as_path


def stage_key(cfg: DedupConfig, input_fingerprint: str) -> dict:
    return {"config": config_hash(cfg), "input": input_fingerprint}


def read_manifest(output_dir: str, manifest: str, key: dict) -> dict | None:
    """The stage's manifest if it was made with this key (:meth:`StageRun.done`), else None."""
    return StageRun(as_path(output_dir) / manifest, **key).done()


def write_manifest(output_dir: str, manifest_name: str, key: dict, manifest: dict) -> dict:
    return StageRun(as_path(output_dir) / manifest_name, **key).finish(manifest)


class FinalizeDedup(PipelineStep):
    name = "🧾 dedup manifest"
    type = "🫂 - DEDUP"

    def __init__(self, output_dir: str, work_dir: str, removals_dir: str, cfg: DedupConfig, tasks: int,
                 outputs: list[str], manifest: str):
        super().__init__()
        self.output_dir = output_dir
        self.work_dir = work_dir
        self.removals_dir = removals_dir
        self.cfg = cfg
        self.tasks = tasks
        self.outputs = list(outputs)
        self.manifest = manifest

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        work, out, removals = (get_datafolder(p) for p in (self.work_dir, self.output_dir, self.removals_dir))
        key = stage_key(self.cfg, RemovalList.load_meta(removals)["input_fingerprint"])
        if read_manifest(self.output_dir, self.manifest, key) is None:
            self.write(work, out, removals, key)
        if work.fs.exists(work.path):
            work.fs.rm(work.path, recursive=True)  # signatures, shingles, buckets, edges: done with
        return None

    def write(self, work, out, removals, key: dict) -> None:
        counts: Counter = Counter()
        documents = 0
        for r in range(self.tasks):
            done = read_json(work, apply_file(r))
            documents += done["documents"]
            for c in done["counts"]:
                counts[(c["route"], c["outcome"])] += c["documents"]
        read = sum(m["documents"] for m in read_signature_metas(work, self.tasks))
        if read != documents:
            raise RuntimeError(f"dedup: the signatures job read {read} documents but apply wrote {documents}: "
                               "the input changed between the jobs; rerun the stage")
        sizes: Counter = Counter()
        for chunk in read_chunks(removals, ROWS_FILE, ROW):
            sizes.update(chunk["cluster_size"][chunk["reason"] == KEPT].tolist())
        kept = sum(n for (_, outcome), n in counts.items() if outcome == "kept")
        if kept - sum(sizes.values()) > 0:
            sizes[1] = kept - sum(sizes.values())
        with self.track_time(unit="job"):
            files = sorted(name for folder in self.outputs for name in out.glob(f"{folder}/*/*.jsonl.gz"))
            outputs = {name: file_sha256(out, name) for name in files}
        manifest = {
            "input_documents": documents,
            "counts": [{"route": r, "outcome": o, "documents": n} for (r, o), n in sorted(counts.items())],
            "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())},
            "outputs": outputs,
        }
        write_manifest(self.output_dir, self.manifest, key, manifest)
        self.stat_update("documents", value=documents, unit="job")
