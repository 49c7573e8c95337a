"""The whole corpus chain (clean -> dedup -> tokenize -> mix -> reports) on real engines: a one-node Slurm cluster
(one command submits every job; `corpus-status` follows it) and a local Ray, each giving the same kept documents,
token shards and mix as the local run of the sample recipe; a failed job on Slurm cancels what depends on it."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from moss_data.chain.layout import ChainLayout
from moss_data.chain.recipe import CorpusRecipe
from moss_data.chain.run import corpus_plan, run_corpus
from moss_data.chain.status import chain_state, chain_status
from moss_data.io.documents import document_files
from moss_data.io.storage import as_path, load_npy
from moss_data.io.tokens import TokenCorpus

CHAIN_TIMEOUT_S = 900


def outputs(recipe: CorpusRecipe) -> dict:
    """What the chain produced, comparable across executors: kept and removed documents per file (decompressed: gzip
    headers carry a time), token ids per route in shard order, the mix manifest's figures and the mix index."""
    out = as_path(recipe.output_dir)
    layout = ChainLayout(out)
    docs = {p.relative_to(out).as_posix(): gzip.decompress(p.read_bytes())
            for folder in (layout.clean, layout.dedup) for p in document_files(folder)}
    corpus = TokenCorpus(out)
    tokens = {route: np.concatenate([s.tokens for s in corpus.open_shards(route)]).tolist()
              for route in corpus.routes()}
    mix = corpus.mix_manifest()
    figures = {k: mix[k] for k in ("routes", "available_tokens", "mixed_tokens", "achieved_ratio", "documents")}
    return {"docs": docs, "tokens": tokens, "mix": figures, "index": load_npy(corpus.mix_index_path).tolist(),
            "reports": sorted(p.name for p in layout.report.iterdir())}


@pytest.fixture(scope="module")
def local_outputs(sample_run) -> dict:
    return outputs(sample_run)


def recipe_on(sample_recipe: CorpusRecipe, out: Path, **executor) -> CorpusRecipe:
    recipe = sample_recipe.model_copy(deep=True)
    recipe.output_dir = out
    recipe.executor = recipe.executor.model_copy(update=executor)
    return CorpusRecipe.model_validate(recipe.model_dump())  # validated again (slurm needs a partition)


def wait_for_chain(recipe: CorpusRecipe, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = chain_state(chain_status(recipe))
        if state in ("done", "failed"):
            return state
        time.sleep(2)
    return "timeout"


def test_the_chain_has_every_stage_as_jobs(sample_recipe):
    names = [p.job.name for p in corpus_plan(sample_recipe)]
    assert names[: len(sample_recipe.sources)] == [s.name for s in sample_recipe.sources]
    assert any(n.startswith("dedup") for n in names) and any(n.startswith("tokenize") for n in names)
    assert names[-2:] == ["mix", "report"]
    assert {p.job.tasks for p in corpus_plan(sample_recipe)} == {1, sample_recipe.executor.tasks}  # sharded jobs


def test_slurm_runs_the_whole_chain_from_one_command(slurm_cluster, sample_recipe, local_outputs, tmp_path):
    from moss_data.cli import app

    recipe = recipe_on(sample_recipe, tmp_path / "slurm", kind="slurm", partition=slurm_cluster.partition,
                       venv_path=slurm_cluster.venv_activate, mem_per_cpu_gb=1)
    started = time.monotonic()
    run_corpus(recipe)  # returns at submission
    submitted = orjson.loads(ChainLayout(recipe.output_dir).chain_state.read_bytes())["jobs"]
    assert time.monotonic() - started < 120
    assert [j["name"] for j in submitted] == [p.job.name for p in corpus_plan(recipe)]
    assert all(int(j["slurm_job_id"]) > 0 for j in submitted)  # every job really went to Slurm
    assert chain_state(chain_status(recipe)) in ("pending", "running")
    assert wait_for_chain(recipe, CHAIN_TIMEOUT_S) == "done"
    assert outputs(recipe) == local_outputs
    # the status command agrees, with the exit code of a finished chain
    recipe_file = tmp_path / "slurm.yaml"
    recipe_file.write_text(orjson.dumps(recipe.model_dump(mode="json")).decode())
    result = CliRunner().invoke(app, ["corpus-status", str(recipe_file)])
    assert result.exit_code == 0 and "chain: done" in result.output


def test_slurm_cancels_the_jobs_after_a_failed_one(slurm_cluster, sample_recipe, tmp_path):
    recipe = recipe_on(sample_recipe, tmp_path / "failing", kind="slurm", partition=slurm_cluster.partition,
                       venv_path=slurm_cluster.venv_activate, mem_per_cpu_gb=1)
    recipe.sources = [s for s in recipe.sources if s.name == "fortunes-zh"]
    recipe.tokenize.tokenizer_path = str(tmp_path / "no-such-tokenizer.json")  # the tokenize job fails at run time
    run_corpus(recipe)
    assert wait_for_chain(recipe, CHAIN_TIMEOUT_S) == "failed"  # bounded: nothing is left pending forever
    by_name = {s.name: s for s in chain_status(recipe)}
    assert by_name["fortunes-zh"].state == "done"
    assert by_name["mix"].state == "failed" and by_name["report"].state == "failed"
    assert by_name["mix"].completed == 0


def rank_workers_started(ray) -> int:
    """How many datatrove RankWorker actors this Ray cluster has started (Ray's per-worker logs name them)."""
    logs_dir = Path(ray._private.worker._global_node.get_logs_dir_path())
    return sum(p.read_text(errors="replace").count(":actor_name:RankWorker") for p in logs_dir.glob("worker-*.out"))


@pytest.mark.timeout(CHAIN_TIMEOUT_S)  # datatrove's Ray executor would wait forever on a failed upstream
def test_ray_runs_the_whole_chain(ray_cluster, sample_recipe, local_outputs, tmp_path):
    recipe = recipe_on(sample_recipe, tmp_path / "ray", kind="ray", workers=2)
    before = rank_workers_started(ray_cluster)
    run_corpus(recipe)
    assert chain_state(chain_status(recipe)) == "done"
    assert rank_workers_started(ray_cluster) - before >= len(corpus_plan(recipe))  # every job ran in Ray actors
    assert outputs(recipe) == local_outputs


def test_the_chain_writes_through_fsspec_urls_with_the_same_outputs(sample_recipe, local_outputs, tmp_path,
                                                                    monkeypatch):
    """Every stage reads and writes the output folder through fsspec: a ``memory://`` output (fsspec's in-memory
    filesystem, one process: one worker) and a ``file://`` URL (worker processes) give the local run's outputs, and
    no URL is ever turned into a local path (``memory://x`` as a Path would be a folder ``memory:`` here)."""
    monkeypatch.chdir(tmp_path)
    in_memory = recipe_on(sample_recipe, "memory://chain-test/out", workers=1)
    assert in_memory.output_dir.protocol == "memory"
    run_corpus(in_memory)
    assert outputs(in_memory) == local_outputs
    assert not any(tmp_path.iterdir()), f"a URL became a local path: {sorted(tmp_path.iterdir())}"
    as_path("memory://chain-test").fs.rm("/chain-test", recursive=True)

    file_url = recipe_on(sample_recipe, f"file://{tmp_path}/file-url")
    assert str(file_url.output_dir).startswith("file://")
    run_corpus(file_url)
    assert outputs(file_url) == local_outputs
