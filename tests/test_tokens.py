"""Token shards hold exactly what the tokenizer gives, with document boundaries; the mix follows the ratios."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moss_data.io.documents import iter_documents
from moss_data.io.tokens import ShardWriter, TokenShard
from moss_data.tokens.config import MixConfig
from moss_data.tokens.stage import plan_mix, run_mix
from moss_data.tokens.tokenizer import EOD, SPECIAL_TOKENS, load_tokenizer, train_tokenizer


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
    manifest = json.loads((out / "tokens" / "manifest.json").read_text())
    for route in ("en", "zh", "code"):
        shard = TokenShard.open(out / "tokens" / route / "part_00000")
        docs = list(iter_documents(out / "dedup" / "kept" / route))
        uids = (out / "tokens" / route / "part_00000.uids").read_text().split()
        assert len(shard) == len(docs) == len(uids) == manifest["routes"][route]["documents"]
        assert [d["metadata"]["doc_uid"] for d in docs] == uids
        expected = [tokenizer.encode(d["text"]).ids + [eod] for d in docs]
        assert shard.lengths().tolist() == [len(e) for e in expected]
        assert int(shard.lengths().sum()) == manifest["routes"][route]["tokens"]
        for i in (0, len(docs) // 2, len(docs) - 1):
            assert shard.document(i).tolist() == expected[i]
        ends = shard.tokens[shard.offsets[1:] - 1]
        assert np.all(ends == eod)  # every document closes with the end-of-document token
        assert int((shard.tokens == eod).sum()) == len(shard)  # and it appears nowhere else


def test_mix_hits_the_target_ratio(sample_run):
    mix = json.loads((sample_run.output_dir / "mix" / "manifest.json").read_text())
    for route, target in mix["target_ratio"].items():
        assert abs(mix["achieved_ratio"][route] - target) < 0.02, route
    index = np.load(sample_run.output_dir / "mix" / "index.npy")
    assert len(index) == mix["documents"]
    shards = {r: TokenShard.open(sample_run.output_dir / "tokens" / r / "part_00000") for r in mix["routes"]}
    totals = {r: 0 for r in mix["routes"]}
    for route_pos, doc in index:
        route = mix["routes"][route_pos]
        totals[route] += len(shards[route].document(doc))
    assert totals == mix["mixed_tokens"]
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
