"""Token shards hold exactly what the tokenizer gives, with document boundaries; the mix follows the ratios; many
tasks give many shards per route holding the same documents and tokens as one task; the mix reads them all."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest

from moss_data.io.documents import iter_documents
from moss_data.io.tokens import ShardWriter, TokenCorpus, TokenShard
from moss_data.tokens.config import MixConfig, TokenizeConfig
from moss_data.tokens.stage import mix_plan, plan_mix, run_mix, run_tokenize, tokenize_plan
from moss_data.tokens.tokenizer import EOD, SPECIAL_TOKENS, load_tokenizer, train_tokenizer

ROUTES = ("en", "zh", "code")


@pytest.fixture(scope="module")
def tokenizer(sample_run):
    return load_tokenizer(sample_run.output_dir / "tokenizer" / "tokenizer.json")


def test_locally_built_tokenizer(tokenizer, sample_run):
    assert tokenizer.get_vocab_size() == sample_run.tokenize.vocab_size
    for special in SPECIAL_TOKENS:
        assert tokenizer.token_to_id(special) is not None
    text = "MOSS 是一个对话模型。def f(x): return x + 1"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text  # byte-level: lossless on mixed text


def test_token_counts_match_the_tokenizer(tokenizer, sample_run):
    out = sample_run.output_dir
    eod = tokenizer.token_to_id(EOD)
    corpus = TokenCorpus(out)
    manifest = json.loads((out / "tokens" / "manifest.json").read_text())
    for route in ROUTES:
        shard = corpus.open_route(route)  # all its shards, in order
        docs = list(iter_documents(out / "dedup" / "kept" / route))
        uids = shard.uids()
        assert len(shard) == len(docs) == len(uids) == manifest["routes"][route]["documents"]
        assert [d["metadata"]["doc_uid"] for d in docs] == uids
        assert [s["name"] for s in manifest["routes"][route]["shards"]] == [s.path.name for s in shard.shards]
        expected = [tokenizer.encode(d["text"]).ids + [eod] for d in docs]
        assert shard.lengths().tolist() == [len(e) for e in expected]
        assert int(shard.lengths().sum()) == manifest["routes"][route]["tokens"]
        for i in (0, len(docs) // 2, len(docs) - 1):
            assert shard.document(i).tolist() == expected[i]
        for part in shard.shards:
            ends = part.tokens[part.offsets[1:] - 1]
            assert np.all(ends == eod)  # every document closes with the end-of-document token
            assert int((part.tokens == eod).sum()) == len(part)  # and it appears nowhere else


def check_mix(out, mix: dict) -> dict[str, set[int]]:
    """The mix hits its target ratios and its index adds up to its token counts; returns the shard positions used
    per route."""
    for route, target in mix["target_ratio"].items():
        assert abs(mix["achieved_ratio"][route] - target) < 0.02, route
    index = np.load(out / "mix" / "index.npy")
    assert len(index) == mix["documents"]
    shards = TokenCorpus(out).mix_shards()
    assert [s.path.name for s in shards] == [e["name"] for e in mix["shards"]]
    totals = {r: 0 for r in mix["routes"]}
    used = {r: set() for r in mix["routes"]}
    for shard_pos, doc in index:
        route = mix["shards"][shard_pos]["route"]
        totals[route] += len(shards[shard_pos].document(doc))
        used[route].add(int(shard_pos))
    assert totals == mix["mixed_tokens"]
    return used


def test_mix_hits_the_target_ratio(sample_run):
    mix = json.loads((sample_run.output_dir / "mix" / "manifest.json").read_text())
    check_mix(sample_run.output_dir, mix)
    # every shard of each route is listed, in order, under its route
    corpus = TokenCorpus(sample_run.output_dir)
    listed = [(r, p.name) for r in mix["routes"] for p in corpus.shards(r)]
    assert [(e["route"], e["name"]) for e in mix["shards"]] == listed
    # the scarcest route relative to its ratio is used whole and nothing is repeated by default
    assert max(mix["repeats"].values()) == pytest.approx(1.0)


def test_plan_mix_upsamples_within_the_cap():
    available = {"en": 1000, "zh": 100, "code": 1000}
    cfg = MixConfig(ratios={"en": 360, "zh": 100, "code": 220}, target_tokens=6800)
    repeats = plan_mix(available, cfg)
    assert repeats["en"] == pytest.approx(3.6) and repeats["code"] == pytest.approx(2.2)
    assert repeats["zh"] == 4.0  # wanted 10 passes, capped at max_repeats
    default = plan_mix(available, MixConfig(ratios={"en": 360, "zh": 100, "code": 220}))
    assert default["zh"] == pytest.approx(1.0) and default["en"] == pytest.approx(0.36)


def test_upsampled_mix_repeats_documents(sample_run, tmp_path):
    import shutil

    shutil.copytree(sample_run.output_dir / "tokens", tmp_path / "tokens")
    default = json.loads((sample_run.output_dir / "mix" / "manifest.json").read_text())
    target = int(2.5 * sum(default["mixed_tokens"].values()))
    mix = run_mix(tmp_path, MixConfig(target_tokens=target, max_repeats=3))
    assert mix["repeats"]["en"] == pytest.approx(2.5, rel=0.01)  # the scarce route is repeated 2.5 times
    for route, target_share in mix["target_ratio"].items():
        assert abs(mix["achieved_ratio"][route] - target_share) < 0.02
    # asking for more than max_repeats allows: the scarce route is capped and its share falls short, visibly
    capped = run_mix(tmp_path, MixConfig(target_tokens=10 * target, max_repeats=3))
    assert capped["repeats"]["en"] == 3.0
    assert capped["achieved_ratio"]["en"] < capped["target_ratio"]["en"] - 0.1


def test_incomplete_shard_is_refused(tmp_path):
    writer = ShardWriter(tmp_path / "part_00000", np.dtype(np.uint16), {"tokenizer": "h"})
    writer.add([1, 2, 0])
    with pytest.raises(FileNotFoundError, match="incomplete"):
        TokenShard.open(tmp_path / "part_00000")  # the writer has not closed it
    writer.close()
    assert TokenShard.open(tmp_path / "part_00000").document(0).tolist() == [1, 2, 0]


def test_tokenizer_without_end_of_document_is_refused(tmp_path):
    tok = train_tokenizer(["some real text " * 50], 300, tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != EOD]
    data["model"]["vocab"].pop(EOD)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    assert tok.token_to_id(EOD) is not None
    with pytest.raises(ValueError, match="no <\\|endoftext\\|> token"):
        load_tokenizer(tmp_path / "bad.json")


# --- many tasks, many shards -------------------------------------------------------------------------------------

SPLIT = {"code": 4, "en": 3, "other": 1, "zh": 3}  # files per route; with 3 tasks en, zh and code get 3 shards each


def split_documents(src, dst, files_per_route: dict[str, int]):
    """A document folder holding the documents of ``src`` (same order) in several files per route."""
    for route, k in files_per_route.items():
        docs = list(iter_documents(src / route))
        for i in range(k):
            path = dst / route / f"part_{i:05d}.jsonl.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(path, "wb") as f:
                f.writelines(orjson.dumps(d) + b"\n" for d in docs[i * len(docs) // k : (i + 1) * len(docs) // k])
    return dst


@pytest.fixture(scope="module")
def sharded(sample_run, tmp_path_factory):
    """The sample's kept documents split into several files per route, tokenized with 1 task and with 3 (each run
    training its own tokenizer): (document folder, {tasks: (output folder, manifest)})."""
    root = tmp_path_factory.mktemp("sharded")
    docs = split_documents(sample_run.output_dir / "dedup" / "kept", root / "docs", SPLIT)
    runs = {}
    for tasks in (1, 3):
        start = time.perf_counter()
        out = root / f"tasks{tasks}"
        runs[tasks] = (out, run_tokenize(docs, out, sample_run.tokenize, tasks=tasks))
        print(f"tokenize with {tasks} task(s): {time.perf_counter() - start:.1f}s")
    return docs, runs


def test_three_tasks_give_the_documents_and_tokens_of_one(sharded, sample_run):
    docs, runs = sharded
    (one, m1), (three, m3) = runs[1], runs[3]
    # the tokenizer job does not depend on the task count (nor on how the documents are split into files)
    trained = (one / "tokenizer" / "tokenizer.json").read_bytes()
    assert trained == (three / "tokenizer" / "tokenizer.json").read_bytes()
    assert trained == (sample_run.output_dir / "tokenizer" / "tokenizer.json").read_bytes()
    assert m1["tokenizer_hash"] == m3["tokenizer_hash"] and m3["tasks"] == 3
    for route, files in SPLIT.items():
        a, b = TokenCorpus(one).open_route(route), TokenCorpus(three).open_route(route)
        assert len(a.shards) == 1 and len(b.shards) == min(files, 3)
        assert all(len(s) > 0 for s in b.shards)
        assert [s["name"] for s in m3["routes"][route]["shards"]] == [s.path.name for s in b.shards]
        uids = [d["metadata"]["doc_uid"] for d in iter_documents(docs / route)]
        assert a.uids() == b.uids() == uids  # the same documents, in file order, shards concatenated in rank order
        assert np.array_equal(a.tokens(), b.tokens()) and np.array_equal(a.lengths(), b.lengths())
        assert m1["routes"][route]["documents"] == m3["routes"][route]["documents"] == len(uids)
        assert m1["routes"][route]["tokens"] == m3["routes"][route]["tokens"] == len(b.tokens())
        assert sum(s["documents"] for s in m3["routes"][route]["shards"]) == len(uids)


def test_the_mix_reads_every_shard_and_hits_the_ratios(sharded, sample_run, tmp_path):
    _, runs = sharded
    outs = {}
    for tasks, (out, _) in runs.items():  # on copies: the fixture's folders stay unmixed
        outs[tasks] = tmp_path / f"tasks{tasks}"
        shutil.copytree(out / "tokens", outs[tasks] / "tokens")
    default = {tasks: run_mix(out, sample_run.mix) for tasks, out in outs.items()}
    used = check_mix(outs[3], default[3])
    assert [e["route"] for e in default[3]["shards"]] == ["code"] * 3 + ["en"] * 3 + ["zh"] * 3
    assert len(used["en"]) == 3  # the scarce route is taken whole: from all its shards
    # the same mix as over one shard per route: the same figures and the same documents in the same order
    for field in ("routes", "target_ratio", "achieved_ratio", "available_tokens", "mixed_tokens", "repeats",
                  "documents"):
        assert default[1][field] == default[3][field], field
    one, three = list(TokenCorpus(outs[1]).mixed_documents()), list(TokenCorpus(outs[3]).mixed_documents())
    assert len(one) == len(three) == default[3]["documents"]
    assert all(np.array_equal(x, y) for x, y in zip(one, three))
    # upsampled over many shards: the repeats and the ratios hold as over one
    target = int(2.5 * sum(default[3]["mixed_tokens"].values()))
    up = run_mix(outs[3], MixConfig(target_tokens=target, max_repeats=3))
    assert up["repeats"]["en"] == pytest.approx(2.5, rel=0.01)
    used = check_mix(outs[3], up)
    assert all(len(used[r]) == 3 for r in ROUTES)
    assert up["mixed_tokens"] == run_mix(outs[1], MixConfig(target_tokens=target, max_repeats=3))["mixed_tokens"]


def test_a_shard_without_its_meta_is_refused_then_rewritten_alone(sharded, sample_run, tmp_path):
    docs, runs = sharded
    out = tmp_path / "out"
    shutil.copytree(runs[3][0], out)
    corpus = TokenCorpus(out)
    before = corpus.open_route("zh")
    uids, tokens = before.uids(), before.tokens()
    victim = corpus.shard_path("zh", 1)
    others = {p: p.with_suffix(".json").stat().st_mtime_ns for r in SPLIT for p in corpus.shards(r) if p != victim}
    tokenizer_mtime = corpus.tokenizer_path.stat().st_mtime_ns
    victim.with_suffix(".json").unlink()  # a task killed before it finished its shard
    with pytest.raises(FileNotFoundError, match="incomplete"):
        TokenShard.open(victim)
    assert victim not in corpus.shards("zh") and len(corpus.shards("zh")) == 2  # never read as part of the route
    manifest = run_tokenize(docs, out, sample_run.tokenize, tasks=3)
    assert victim.with_suffix(".json").exists()
    assert {p: p.with_suffix(".json").stat().st_mtime_ns for p in others} == others  # the done shards were kept
    assert corpus.tokenizer_path.stat().st_mtime_ns == tokenizer_mtime  # and the tokenizer not trained again
    after = corpus.open_route("zh")
    assert after.uids() == uids and np.array_equal(after.tokens(), tokens)
    assert manifest["routes"] == runs[3][1]["routes"]


def test_fewer_tasks_leave_no_stale_shard_and_a_stale_mix_is_refused(sharded, sample_run, tmp_path):
    docs, runs = sharded
    out = tmp_path / "out"
    shutil.copytree(runs[3][0], out)
    corpus = TokenCorpus(out)
    run_mix(out, sample_run.mix)
    manifest = run_tokenize(docs, out, sample_run.tokenize, tasks=1)  # the 3-task shards of another run go
    assert manifest["routes"] == runs[1][1]["routes"]
    for route in SPLIT:
        assert [p.name for p in corpus.shards(route)] == ["part_00000"]
        assert corpus.shard_names(route) == ["part_00000"]  # no file of part_00001/2 is left
        assert corpus.open_route(route).uids() == TokenCorpus(runs[1][0]).open_route(route).uids()
    with pytest.raises((ValueError, FileNotFoundError), match="rerun the (mix|tokenize)"):
        next(corpus.mixed_documents())  # the mix points into shards that changed
    run_mix(out, sample_run.mix)  # its key (the shards' keys) changed: mixed again
    assert sum(1 for _ in corpus.mixed_documents()) == json.loads(corpus.mix_manifest_path.read_text())["documents"]
    # a shard re-encoded after the mix (its key changed) is refused, not read with the wrong document offsets
    meta_path = corpus.shard_path("en", 0).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["key"]["tokenizer"] = "another"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="changed since the mix"):
        next(corpus.mixed_documents())


def test_tokenizer_training_is_deterministic(sample_run, tmp_path):
    texts = [d["text"] for r in ROUTES for d in iter_documents(sample_run.output_dir / "dedup" / "kept" / r)][:300]
    (tmp_path / "texts.json").write_bytes(orjson.dumps(texts))
    script = ("import sys, orjson; from pathlib import Path; from moss_data.tokens.tokenizer import train_tokenizer; "
              "train_tokenizer(orjson.loads(Path(sys.argv[1]).read_bytes()), 2000, Path(sys.argv[2]))")
    for seed, threads in (("1", "1"), ("2", "2")):  # other hash seeds, other thread counts: the same bytes
        env = os.environ | {"PYTHONHASHSEED": seed, "RAYON_NUM_THREADS": threads}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "texts.json"), str(tmp_path / f"{seed}.json")],
                       env=env, check=True, timeout=300)
    train_tokenizer(texts, 2000, tmp_path / "here.json")
    saved = {name: (tmp_path / name).read_bytes() for name in ("1.json", "2.json", "here.json")}
    assert saved["1.json"] == saved["2.json"] == saved["here.json"]


def test_the_plans_are_jobs_of_picklable_steps_and_read_nothing(tmp_path):
    cfg = TokenizeConfig()
    docs, out = str(tmp_path / "not-written-yet"), str(tmp_path / "out")  # on Slurm the plan comes before the input
    jobs = tokenize_plan(docs, out, cfg, tasks=4)
    assert [(j.name, j.tasks) for j in jobs] == [("tokenizer", 1), ("tokenize", 4), ("tokenize-manifest", 1)]
    given = tokenize_plan(docs, out, cfg.model_copy(update={"tokenizer_path": str(tmp_path / "t.json")}), tasks=4)
    assert [(j.name, j.tasks) for j in given] == [("tokenize", 4), ("tokenize-manifest", 1)]
    mix = mix_plan(out, MixConfig())
    assert [(j.name, j.tasks) for j in mix] == [("mix", 1)]
    for job in jobs + mix:  # a Slurm or Ray task unpickles its pipeline
        restored = pickle.loads(pickle.dumps(job.pipeline))
        assert [type(s) for s in restored] == [type(s) for s in job.pipeline]
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="no document shards"):
        run_tokenize(tmp_path / "not-written-yet", tmp_path / "out", cfg)


def test_a_stray_complete_shard_is_never_mixed(sharded, sample_run, tmp_path):
    docs, runs = sharded
    out = tmp_path / "out"
    shutil.copytree(runs[3][0], out)
    corpus = TokenCorpus(out)
    for suffix in (".bin", ".idx.npy", ".uids", ".json"):  # a complete shard no task of this run wrote
        shutil.copy(corpus.shard_path("en", 0).with_suffix(suffix), corpus.shard_path("en", 7).with_suffix(suffix))
    assert len(corpus.shards("en")) == 4
    with pytest.raises(ValueError, match="rerun the tokenize stage"):
        run_mix(out, sample_run.mix)  # would count its documents twice
    run_tokenize(docs, out, sample_run.tokenize, tasks=3)  # the manifest job removes it
    assert [p.name for p in corpus.shards("en")] == ["part_00000", "part_00001", "part_00002"]
    check_mix(out, run_mix(out, sample_run.mix))


def test_an_empty_shard_opens_as_no_documents(tmp_path):
    writer = ShardWriter(tmp_path / "part_00000", np.dtype(np.uint16), {"tokenizer": "h"})
    writer.write_uids([])
    writer.close()  # a task whose files of a route held no document
    shard = TokenShard.open(tmp_path / "part_00000")
    assert len(shard) == 0 and shard.lengths().tolist() == [] and shard.uids() == []
