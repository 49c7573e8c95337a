"""`just bench-scale`: the corpus chain at growing sizes: core-seconds and peak memory per job per document, a fit, a
plot, and a projection to MOSS's 680B tokens in node-hours.

Corpora are made from real text, resampled and lightly edited: sentences of the sample corpus's cleaned English and
Chinese documents (Debian Reference, LibreOffice help, fortunes-zh) and lines of its code files (the standard
library part, PyYAML), taken in runs of 1-3 consecutive units, joined into new documents of 2-6 paragraphs (text)
or 10-60 lines (code), with 1% of their tokens edited; 10% of the documents are near-duplicates of a recent one
(tokens edited at 2-6%) and 2% exact copies, so dedup has real work at a constant duplicate rate. The units are
short on purpose: a finite pool resampled in long pieces (whole paragraphs, top-level code blocks) puts each piece
in a number of documents that grows with N, so chance LSH collisions, candidate pairs and the candidates job's cost
grow quadratically (measured: 22k -> 325k -> 5.09M candidate pairs at 8k / 32k / 128k documents), which real,
mostly distinct documents do not do. Inputs are JSONL (web text is already extracted: trafilatura's cost is
measured by `just bench-corpus`).

Every job of the chain (``moss_data.chain.run.corpus_plan``) runs in a process of its own with datatrove's local
executor, its ``tasks`` tasks one after another in that process (one worker: datatrove's pool workers would live
under a forkserver). A job's time is the CPU seconds (user + system) of its process and its children: its
core-seconds, which other load on the machine does not inflate (wall seconds are kept beside them). Its memory is
the process's peak resident memory (``VmHWM``, read by the process itself: ``ru_maxrss`` would count the parent's
pages from before the exec), that of one process running one task at a time. Per job:

- time exponent ``b`` between consecutive sizes (time ~ N^b); target: 4x the documents costs at most 4.5x the time,
  i.e. ``b <= log 4.5 / log 4 = 1.085``;
- marginal memory per document per process: the growth of the peak between sizes divided by the growth of the
  documents one process handles (a sharded job's process handles 1/tasks of them); target <= 1 KB in dedup.

Projection: each job's marginal core-seconds per document between the two largest sizes (start-up costs do not
scale), times the documents of 680B tokens (at this run's tokens per document), over 64-core nodes; single-task jobs
(decisions, manifests, mix, report) are given as hours of one process, since more nodes do not shorten them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson

from moss_data.chain.layout import ChainLayout
from moss_data.chain.recipe import CorpusRecipe
from moss_data.chain.run import corpus_plan
from moss_data.corpus.layout import CleanLayout
from moss_data.io.documents import iter_documents
from moss_data.io.tokens import TokenCorpus
from moss_data.recipe import load_recipe
from moss_data.tables import markdown_table

REPO = Path(__file__).resolve().parents[2]
MOSS_TOKENS = 680e9
NODE_CORES = 64
TIME_EXPONENT_TARGET = math.log(4.5) / math.log(4)
MEMORY_TARGET_BYTES = 1024
WORKERS = 1  # tasks run one after another in the measured process (see the module docstring)
TASKS = 2
DOCS_PER_FILE = 5000


# ------------------------------------------------------------------ corpora


GENERATOR = 2  # bumped when documents are made differently: a cached corpus of another generator is remade
_SENTENCE_END = {"en": re.compile(r"(?<=[.!?])\s+"), "zh": re.compile(r"(?<=[。！？；])")}


def unit_pools(sample: Path, work: Path) -> dict[str, list[str]]:
    """Sentences of the sample corpus's clean English and Chinese documents, and lines of its code files."""
    clean = CleanLayout(sample / "corpus").clean
    if not any(clean.glob("*/*.jsonl.gz")):
        clean = _run_sample_recipe(sample, work)
    pools: dict[str, list[str]] = {"en": [], "zh": [], "code": []}
    for route in pools:
        for d in iter_documents(clean / route):
            if route == "code":
                pools[route] += [line.rstrip() for line in d["text"].splitlines() if len(line.strip()) >= 4]
                continue
            for paragraph in d["text"].split("\n\n"):
                pools[route] += [u.strip() for u in _SENTENCE_END[route].split(paragraph) if len(u.strip()) >= 10]
    if not all(pools.values()):
        raise RuntimeError(f"bench-scale: no {[r for r, p in pools.items() if not p]} documents under {clean}")
    return pools


def _run_sample_recipe(sample: Path, work: Path) -> Path:
    from moss_data.chain.run import run_corpus
    from moss_data.corpus.sample import build_sample_corpus

    build_sample_corpus(sample)
    recipe = load_recipe(REPO / "recipes/corpus/sample.yaml", CorpusRecipe)
    for source in recipe.sources:
        source.path = str(sample / "raw" / Path(source.path).relative_to("data/sample/raw"))
    recipe.output_dir = work / "sample_run"
    run_corpus(recipe)
    return CleanLayout(recipe.output_dir).clean


def _edit(text: str, rate: float, rng: random.Random, cjk: bool) -> str:
    tokens = list(text) if cjk else text.split(" ")
    out = []
    for tok in tokens:
        r = rng.random()
        if r < rate / 2:
            continue
        out.append(rng.choice(tokens) if r < rate else tok)
    return ("" if cjk else " ").join(out)


def _runs(pool: list[str], count: int, rng: random.Random) -> list[str]:
    """``count`` runs of 1-3 consecutive units from random places of the pool."""
    out = []
    for _ in range(count):
        start = rng.randrange(len(pool))
        out += pool[start : start + rng.randint(1, 3)]
    return out


def make_document(route: str, pools: dict[str, list[str]], rng: random.Random) -> str:
    """Runs of real sentences (text) or lines (code) lightly edited: new documents that are not near-duplicates of
    each other, so only the planted ones are."""
    cjk = route == "zh"
    if route == "code":
        return "\n".join(_edit(u, 0.01, rng, False) for u in _runs(pools[route], rng.randint(5, 30), rng))
    joiner = "" if cjk else " "
    paragraphs = [joiner.join(_edit(u, 0.01, rng, cjk) for u in _runs(pools[route], rng.randint(2, 5), rng))
                  for _ in range(rng.randint(2, 6))]
    return "\n\n".join(paragraphs)


def write_corpus(n: int, pools: dict[str, list[str]], folder: Path, seed: int = 0) -> dict[str, int]:
    """``n`` documents as JSONL shards under ``folder/<route group>/``: en and zh together (language ID routes
    them), code apart. Returns documents per group. Skipped when a complete corpus of this size is there."""
    done = folder / ".complete"
    if done.exists():
        made = orjson.loads(done.read_bytes())
        if made.get("generator") == GENERATOR:
            return made["counts"]
        shutil.rmtree(folder)
    rng = random.Random(seed)
    shares = {"en": 0.53, "zh": 0.15, "code": 0.32}  # MOSS's 360 : 100 : 220
    recent: dict[str, list[str]] = {r: [] for r in shares}
    writers: dict[str, gzip.GzipFile] = {}
    counts = {"web": 0, "code": 0}
    for i in range(n):
        route = rng.choices(list(shares), weights=list(shares.values()))[0]
        r = rng.random()
        if r < 0.02 and recent[route]:
            text = rng.choice(recent[route])  # exact copy
        elif r < 0.12 and recent[route]:
            text = _edit(rng.choice(recent[route]), rng.uniform(0.02, 0.06), rng, route == "zh")  # near-duplicate
        else:
            text = make_document(route, pools, rng)
        recent[route] = (recent[route] + [text])[-200:]
        group = "code" if route == "code" else "web"
        index = counts[group]
        if index % DOCS_PER_FILE == 0:
            if group in writers:
                writers[group].close()
            path = folder / group / f"part_{index // DOCS_PER_FILE:05d}.jsonl.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            writers[group] = gzip.open(path, "wb", compresslevel=1)
        writers[group].write(orjson.dumps({"id": f"{group}-{index}", "text": text}) + b"\n")
        counts[group] += 1
    for w in writers.values():
        w.close()
    done.write_bytes(orjson.dumps({"generator": GENERATOR, "counts": counts}))
    return counts


def scale_recipe(corpus: Path, out: Path) -> CorpusRecipe:
    return CorpusRecipe.model_validate({
        "name": f"scale-{corpus.name}", "output_dir": str(out),
        "sources": [{"name": "web", "kind": "jsonl", "path": str(corpus / "web")},
                    {"name": "code", "kind": "jsonl", "path": str(corpus / "code"), "route": "code"}],
        "executor": {"kind": "local", "tasks": TASKS, "workers": WORKERS},
        "tokenize": {"vocab_size": 8000, "train_chars_per_route": 5_000_000},
    })


# ------------------------------------------------------------------ measuring


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (the measured job processes and theirs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    """This process's peak resident memory since it exec'd (``VmHWM``; ``ru_maxrss`` would also count the pages
    of the parent it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def run_one_job(recipe_json: str, index: int, result: str) -> None:
    """In a child process: run job ``index`` of the chain with datatrove's local executor; write its peak memory."""
    from moss_data.executors import build_executor

    recipe = CorpusRecipe.model_validate_json(Path(recipe_json).read_text())
    planned = corpus_plan(recipe)[index]
    build_executor(recipe.executor, planned.job, planned.logging_dir).run()
    Path(result).write_text(str(peak_rss_kib()))


def measure_chain(recipe: CorpusRecipe, work: Path) -> list[dict]:
    recipe_json = work / f"{recipe.name}.json"
    recipe_json.write_text(recipe.model_dump_json())
    rows = []
    for index, planned in enumerate(corpus_plan(recipe)):
        result = work / "peak_rss_kib"
        result.unlink(missing_ok=True)
        start, cpu_before = time.perf_counter(), _children_cpu_seconds()
        proc = subprocess.run([sys.executable, "-m", "moss_data.bench.scale", "--run-job", str(recipe_json),
                               "--index", str(index), "--result", str(result)], env=os.environ | {"PYTHONUNBUFFERED": "1"})
        seconds = time.perf_counter() - start
        cpu_seconds = _children_cpu_seconds() - cpu_before  # the job's core-seconds: what other load cannot inflate
        if proc.returncode != 0 or not result.exists():
            raise RuntimeError(f"bench-scale: job {planned.job.name} failed; logs in {planned.logging_dir}/logs")
        peak_mb = int(result.read_text()) / 1024
        rows.append({"job": planned.job.name, "tasks": planned.job.tasks, "seconds": round(cpu_seconds, 2),
                     "wall_seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1)})
        print(f"  {planned.job.name}: {cpu_seconds:.1f} core-s ({seconds:.1f} s wall), peak {peak_mb:.0f} MB",
              flush=True)
    return rows


def stage_documents(recipe: CorpusRecipe, counts: dict[str, int]) -> dict[str, int]:
    """Documents at the input of each job, read back from the outputs."""
    layout = ChainLayout(recipe.output_dir)
    dedup_manifest = orjson.loads((layout.dedup / "manifest.json").read_bytes())
    tokens = orjson.loads(TokenCorpus(recipe.output_dir).manifest_path.read_bytes())
    kept = sum(r.get("documents", 0) for r in tokens["routes"].values())
    total = counts["web"] + counts["code"]
    per_job = {}
    for p in corpus_plan(recipe):
        name = p.job.name
        per_job[name] = (counts.get(name) if name in counts else
                         dedup_manifest["input_documents"] if name.startswith("dedup") else
                         kept if name.startswith(("tokenize", "mix")) else total)
    return per_job


def tokens_per_document(recipe: CorpusRecipe) -> float:
    tokens = orjson.loads(TokenCorpus(recipe.output_dir).manifest_path.read_bytes())
    routes = tokens["routes"].values()
    return sum(r["tokens"] for r in routes) / max(sum(r["documents"] for r in routes), 1)


# ------------------------------------------------------------------ analysis


def analyse(runs: list[dict]) -> dict:
    """Exponents and marginal memory between consecutive sizes, and the projection from the largest size."""
    jobs = [r["job"] for r in runs[0]["jobs"]]
    table, targets = [], []
    for a, b in zip(runs, runs[1:]):
        for name in jobs:
            ja = next(j for j in a["jobs"] if j["job"] == name)
            jb = next(j for j in b["jobs"] if j["job"] == name)
            da, db = a["stage_documents"][name], b["stage_documents"][name]
            exponent = math.log(jb["seconds"] / ja["seconds"]) / math.log(db / da) if da and db > da else None
            per_process = lambda d, j: d / j["tasks"]  # noqa: E731
            grow = per_process(db, jb) - per_process(da, ja)
            mem = (jb["peak_rss_mb"] - ja["peak_rss_mb"]) * 2**20 / grow if grow > 0 else None
            row = {"job": name, "from_docs": a["documents"], "to_docs": b["documents"],
                   "seconds": f"{ja['seconds']} -> {jb['seconds']}", "time_exponent": _r(exponent, 3),
                   "peak_rss_mb": f"{ja['peak_rss_mb']} -> {jb['peak_rss_mb']}",
                   "marginal_bytes_per_doc_per_process": _r(mem, 0)}
            table.append(row)
            targets.append({"job": name, "from_docs": a["documents"],
                            "time_linear": exponent is None or exponent <= TIME_EXPONENT_TARGET,
                            "memory_ok": not name.startswith("dedup") or mem is None or mem <= MEMORY_TARGET_BYTES})
    # Projection from the marginal cost between the two largest sizes (fixed start-up costs do not scale).
    prev, last = runs[-2], runs[-1]
    docs_680b = MOSS_TOKENS / last["tokens_per_document"]
    sharded = serial = 0.0
    for name in jobs:
        ja = next(j for j in prev["jobs"] if j["job"] == name)
        jb = next(j for j in last["jobs"] if j["job"] == name)
        per_doc = max(jb["seconds"] - ja["seconds"], 0) / (last["documents"] - prev["documents"])
        if jb["tasks"] > 1:
            sharded += per_doc * docs_680b
        else:
            serial += per_doc * docs_680b
    projection = {"tokens_per_document": round(last["tokens_per_document"], 1), "documents": f"{docs_680b:.3g}",
                  "sharded_node_hours_64_cores": round(sharded / NODE_CORES / 3600, 1),
                  "single_process_hours": round(serial / 3600, 1),
                  "from": f"marginal seconds per document between {prev['documents']} and {last['documents']} "
                          "documents, one core of this machine"}
    return {"between_sizes": table, "targets": targets, "projection": projection}


def _r(value, digits):
    return None if value is None else round(value, digits) if digits else int(round(value))


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in [j["job"] for j in runs[0]["jobs"]]:
        xs = [r["documents"] for r in runs]
        ax_t.plot(xs, [next(j["seconds"] for j in r["jobs"] if j["job"] == name) for r in runs], "o-", label=name)
        ax_m.plot(xs, [next(j["peak_rss_mb"] for j in r["jobs"] if j["job"] == name) for r in runs], "o-", label=name)
    xs = [r["documents"] for r in runs]
    ax_t.plot(xs, [r["total_seconds"] for r in runs], "ko-", label="whole chain")
    ax_t.plot(xs, [runs[0]["total_seconds"] * x / xs[0] for x in xs], "k--", label="linear from the smallest size")
    ax_t.set(xscale="log", yscale="log", xlabel="documents", ylabel="core-seconds", title="time per job")
    ax_m.set(xscale="log", xlabel="documents", ylabel="peak RSS of the largest process (MB)", title="memory per job")
    ax_t.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/bench"))
    parser.add_argument("--sample", type=Path, default=Path("data/sample"))
    parser.add_argument("--sizes", default="10000,100000,1000000", help="documents per corpus, comma-separated")
    parser.add_argument("--run-job", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_job:
        run_one_job(args.run_job, args.index, args.result)
        return
    work = args.out / "scale"
    work.mkdir(parents=True, exist_ok=True)
    pools = unit_pools(args.sample, work)
    runs = []
    for n in sorted(int(s) for s in args.sizes.split(",")):
        print(f"bench-scale: {n} documents", flush=True)
        counts = write_corpus(n, pools, work / f"corpus_{n}")
        recipe = scale_recipe(work / f"corpus_{n}", work / f"run_{n}")
        shutil.rmtree(recipe.output_dir, ignore_errors=True)
        jobs = measure_chain(recipe, work)
        runs.append({"documents": n, "jobs": jobs, "total_seconds": round(sum(j["seconds"] for j in jobs), 1),
                     "stage_documents": stage_documents(recipe, counts),
                     "tokens_per_document": tokens_per_document(recipe)})
    result = {"runs": runs, **(analyse(runs) if len(runs) > 1 else {})}
    (args.out / "scale.json").write_text(json.dumps(result, indent=2))
    plot(runs, args.out / "scale.png")
    import polars as pl

    for r in runs:
        print(f"\n{r['documents']} documents, {r['total_seconds']} s:\n" + markdown_table(pl.DataFrame(r["jobs"])))
    if len(runs) > 1:
        print("\n" + markdown_table(pl.DataFrame(result["between_sizes"])))
        print("\nprojection:", json.dumps(result["projection"]))
        print("targets met:", all(t["time_linear"] and t["memory_ok"] for t in result["targets"]))
    print(f"\nplot: {args.out / 'scale.png'} ; figures: {args.out / 'scale.json'}")


if __name__ == "__main__":
    main()
