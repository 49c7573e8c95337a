"""The corpus chain under change, collision and kill: a changed recipe redoes exactly what it affects and ends where a
fresh run would; identical input and recipe give identical bytes; one run per output folder; kill -9 of the run at
random points, then a resume, gives the uninterrupted run's bytes with no process left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import psutil
import pytest

from moss_data.chain.layout import ChainLayout
from moss_data.chain.recipe import CorpusRecipe
from moss_data.chain.run import run_corpus
from moss_data.io.run_lock import RunLock, RunLockedError

REPO = Path(__file__).resolve().parent.parent
# Not outputs: datatrove's logs (timings), the merged stats (timings), and the run record/report text, which name
# the output folder and say what this particular run did.
NOT_OUTPUTS = ("logs/", "report/", ".moss-run.lock")


def output_bytes(out: Path) -> dict[str, bytes]:
    """Every output file of a run, by its path inside the output folder."""
    files = {}
    for path in sorted(Path(out).rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith(NOT_OUTPUTS):
            files[rel] = path.read_bytes()
    return files


def with_changes(recipe: CorpusRecipe, out: Path, **changes) -> CorpusRecipe:
    data = recipe.model_dump(mode="json") | {"output_dir": str(out)}
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return CorpusRecipe.model_validate(data)


def what_each_job_did(recipe: CorpusRecipe) -> dict[str, str]:
    return {j["job"]: j["what"] for j in orjson.loads(ChainLayout(recipe.output_dir).runs.read_bytes())["jobs"]}


@pytest.fixture(scope="module")
def reference(sample_run) -> dict[str, bytes]:
    return output_bytes(sample_run.output_dir)


def test_two_runs_of_the_same_recipe_give_identical_bytes(sample_run, reference, tmp_path):
    again = with_changes(sample_run, tmp_path / "again")
    run_corpus(again)
    assert len(reference) > 40 and any(k.endswith(".jsonl.gz") for k in reference)
    assert output_bytes(again.output_dir) == reference  # gzip headers carry no time or name; orders are stable


def test_a_changed_recipe_redoes_exactly_the_jobs_it_affects_and_ends_like_a_fresh_run(sample_run, tmp_path):
    out = tmp_path / "changing"
    run_corpus(with_changes(sample_run, out))
    # the mix only: clean, dedup and tokenize are kept
    mixed = with_changes(sample_run, out, mix__ratios={"en": 1, "zh": 1, "code": 1})
    run_corpus(mixed)
    did = what_each_job_did(mixed)
    assert did["mix"] == "redone: changed since the last run: mix.ratios.code, mix.ratios.en, mix.ratios.zh"
    assert all(w.startswith("kept") for j, w in did.items() if j not in ("mix", "report")), did
    # a clean setting: every clean job redone (their old shards removed), everything after redone too
    smaller = with_changes(sample_run, out, mix__ratios={"en": 1, "zh": 1, "code": 1}, max_doc_bytes=20_000)
    run_corpus(smaller)
    did = what_each_job_did(smaller)
    assert did["fortunes-zh"] == "redone: changed since the last run: max_doc_bytes"
    assert did["tokenizer"] == "redone: an earlier job of the chain was redone"
    fresh = with_changes(smaller, tmp_path / "fresh")
    run_corpus(fresh)
    assert output_bytes(out) == output_bytes(fresh.output_dir)
    assert any(k.startswith("excluded/") and "size" in k for k in output_bytes(out))  # the new limit did exclude
    # --force redoes a stage whose key did not change
    run_corpus(smaller, force=["tokenize"])
    did = what_each_job_did(smaller)
    assert did["tokenize"] == "redone: --force" and did["dedup-apply"].startswith("kept")
    assert did["mix"] == "redone: an earlier job of the chain was redone"
    assert output_bytes(out) == output_bytes(fresh.output_dir)
    with pytest.raises(ValueError, match="not a stage"):
        run_corpus(smaller, force=["tokenise"])


def test_one_run_per_output_folder_and_a_dead_holder_is_taken_over(sample_run, tmp_path):
    recipe = with_changes(sample_run, tmp_path / "locked")
    lock_path = ChainLayout(recipe.output_dir).lock
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path.parent.mkdir(parents=True)
        info = {"pid": holder.pid, "host": socket.gethostname(), "since": "now", "command": "another run"}
        lock_path.write_bytes(json.dumps(info).encode())
        with pytest.raises(RunLockedError, match=f"in use by pid {holder.pid}"):
            run_corpus(recipe)
    finally:
        holder.kill()
        holder.wait()
    with RunLock(lock_path):  # the holder is gone: its lock is stale and taken over
        assert json.loads(lock_path.read_bytes())["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match="already runs into this folder"):
            RunLock(lock_path).acquire()
    assert not lock_path.exists()


def _processes_tagged(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("MOSS_TEST_RUN") == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_bytes_and_leaves_no_process(
        sample_run, reference, tmp_path):
    """The run is ``moss-data corpus`` in a process of its own (with its pool workers, forkserver and manager);
    it is killed with SIGKILL three times at random moments, each time resumed, then run to the end."""
    recipe = with_changes(sample_run, tmp_path / "killed")
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(recipe.model_dump_json())
    rng = random.Random(int(os.environ.get("MOSS_KILL_SEED", "0")) or None)
    moss_data = Path(sys.executable).parent / "moss-data"
    for attempt in range(4):
        tag = uuid.uuid4().hex
        run = subprocess.Popen([str(moss_data), "corpus", str(recipe_file)], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=os.environ | {"MOSS_TEST_RUN": tag})
        if attempt < 3:
            time.sleep(rng.uniform(1.0, 12.0))
            started = _processes_tagged(tag)
            run.send_signal(signal.SIGKILL)
            run.wait()
            deadline = time.monotonic() + 10
            while (left := _processes_tagged(tag)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not left, f"left behind after kill -9 ({len(started)} processes were running): " + ", ".join(
                f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in left)
        else:
            assert run.wait(timeout=600) == 0
    assert output_bytes(recipe.output_dir) == reference
    assert not ChainLayout(recipe.output_dir).lock.exists()


def test_a_tokenizer_save_cut_mid_write_leaves_the_previous_one_whole(sample_run, tmp_path, monkeypatch):
    """The tokenizer used to be saved in place: cut mid-write, every later resume failed to load it. Now a temporary
    file is renamed over it: a cut (here the rename never happens) leaves the previous tokenizer loadable."""
    from moss_data.io.documents import iter_documents
    from moss_data.tokens.tokenizer import load_tokenizer, train_tokenizer

    texts = [d["text"] for d in iter_documents(sample_run.output_dir / "clean" / "en")][:50]
    path = tmp_path / "tokenizer" / "tokenizer.json"
    train_tokenizer(texts, 600, path)
    before = path.read_bytes()

    def cut(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(texts[:10], 400, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and load_tokenizer(path).get_vocab_size() == 600
