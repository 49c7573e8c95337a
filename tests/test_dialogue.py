"""Dialogue engine: novelty filtering, prompt filters, quarantine, shards that survive kill -9 and load in datasets."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from moss_data.text.langid import LanguageIdentifier
from moss_data.io.documents import iter_documents
from moss_data.text.shingles import tokenize
from moss_data.llm import Generation
from moss_data.llm.checks import check_output
from moss_data.dialogue.selfinstruct import NoveltyIndex, PromptFilter, SelfInstructConfig, load_seeds, rouge_l
from moss_data.io.conversations import ShardStore
from moss_data.formats import Conversation

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def real_sentences(sample_run) -> list[str]:
    out = []
    for d in itertools.islice(iter_documents(sample_run.output_dir / "clean" / "en"), 120):
        out += [s.strip() for s in d["text"].replace("\n", " ").split(". ") if 40 < len(s) < 200]
    assert len(out) > 300
    return out


def test_novelty_index_matches_brute_force_rouge(real_sentences):
    index = NoveltyIndex(0.7)
    kept: list[str] = []
    misses = 0
    for s in real_sentences:
        lsh_says = index.most_similar(s) >= 0.7
        brute = max((rouge_l(tokenize(s, "zh"), tokenize(k, "zh")) for k in kept), default=0) >= 0.7
        assert brute or not lsh_says  # candidates are verified with ROUGE-L: the LSH never invents a match
        misses += brute and not lsh_says
        if not lsh_says:
            index.add(s)
            kept.append(s)
    # near-copies of kept prompts are caught, and the LSH compared far fewer pairs than all of them
    for s in kept[:50]:
        assert index.most_similar(s.replace(" the ", " a ", 1) + " Please.") >= 0.7
    assert index.comparisons < 0.05 * len(real_sentences) * len(kept)
    assert misses <= 0.02 * len(real_sentences)


def test_prompt_filter_reasons():
    cfg = SelfInstructConfig()
    seeds = load_seeds(REPO / "prompts" / "seeds", ["en", "zh"], ["writing"])
    index = NoveltyIndex(cfg.novelty_threshold)
    for s in seeds[("en", "writing")]:
        index.add(s)
    f = PromptFilter(cfg, "en", index, LanguageIdentifier())
    seed = seeds[("en", "writing")][0]
    assert f.check("Write a haiku about a quiet harbor at dawn, with one image of gulls.", "length") == "truncated"
    assert f.check("Write.", "stop") == "too_short"
    assert f.check("Here's a new request for you:", "stop") == "not_a_request"
    assert f.check("I'm not sure what you're asking, but I'll be happy to help!", "stop") == "assistant_voice"
    assert f.check("Describe this picture of a harbor at dawn in three sentences.", "stop") == "blacklisted"
    assert f.check(seeds[("zh", "writing")][0], "stop") == "wrong_language"
    assert f.check(seed.replace("short", "brief"), "stop") == "not_novel"
    assert f.check("Write a limerick about a cat who learns to play the violin.", "stop") is None
    assert f.check("Write a limerick about a cat who learns to play the violin!", "stop") == "not_novel"


def test_bad_outputs_get_a_reason():
    assert check_output(Generation("Fine answer.", "stop"), "reply") == ""
    assert check_output(Generation("", "stop"), "reply") == "empty_reply"
    assert check_output(Generation("Cut in the mid", "length"), "reply") == "truncated_reply"
    assert check_output(Generation("Sure<eom>\n<|Human|>: more", "stop"), "reply") == "role_marker"
    assert check_output(Generation("", "error", error="HTTP 503"), "user") == "backend_error"


def row(cid: str) -> dict:
    conv_messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    return {"conversation_id": cid, "category": "writing", "language": "en", "num_turns": 1,
            "messages": conv_messages, "moss_record": "{}", "provenance": "{}"}


def test_shard_store_recovers_what_a_kill_leaves(tmp_path):
    store = ShardStore(tmp_path, rows_per_shard=2)
    for i in range(4):
        store.add(row(f"c{i}"))
    store.add(row("c4"))  # buffered, not flushed: "lost" by the kill, regenerated later
    shards = tmp_path / "shards"
    # killed after renaming part_00002 but before the manifest update, with a half-written .tmp next to it
    (shards / "part_00001.parquet").rename(shards / "part_00002.parquet")
    manifest = orjson.loads((tmp_path / "manifest.json").read_bytes())
    manifest["shards"] = manifest["shards"][:1]
    (tmp_path / "manifest.json").write_bytes(orjson.dumps(manifest))
    (shards / "part_00003.parquet.tmp").write_bytes(b"PAR1 half")
    (shards / "part_00004.parquet").write_bytes(b"PAR1 not a parquet file")
    again = ShardStore(tmp_path, rows_per_shard=2)
    assert again.done_ids() == {"c0", "c1", "c2", "c3"}
    assert sorted(p.name for p in shards.iterdir()) == ["part_00000.parquet", "part_00002.parquet"]


RESUME_RECIPE = """
name: resume-test
output_dir: {out}
prompts_dir: {prompts}
categories: [writing, code, honest]
conversations_per_category: 3
max_turns: 1
self_instruct: {{enabled: false}}
tool_traces: {{enabled: false}}
generation: {{assistant: {{kind: transformers, batch_size: 2, model: {model}}}, max_concurrent: 4, records_per_chunk: 2}}
assistant_sampling: {{max_new_tokens: 24, temperature: 0.7}}
rows_per_shard: 1
"""


def _results_written(out: Path) -> list[str]:
    """Ids of the rollouts the generation runner has finished so far (final chunks and the chunk in progress)."""
    work = out / "generation" / "conversations"
    ids = []
    for folder in ("output", "checkpoints/00000"):
        for path in (work / folder).glob("*.jsonl") if (work / folder).exists() else ():
            for line in path.read_bytes().splitlines():
                try:
                    ids.append(orjson.loads(line)["id"])
                except orjson.JSONDecodeError:  # a line the kill cut short (datatrove skips it too, and redoes it)
                    continue
    return ids


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    """kill -9 in the middle of generation (finished chunks of 2 results, a chunk in progress, rollouts in flight),
    then the same command again: every planned conversation is in the shards or quarantine exactly once, and the
    resumed run did not generate again what the killed one had finished."""
    from moss_data.llm.models import local_smollm2

    model = local_smollm2(REPO / "data" / "models" / "smollm2-135m-instruct")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RESUME_RECIPE.format(out=tmp_path / "out", prompts=REPO / "prompts", model=model))
    cli = [sys.executable, "-m", "moss_data.cli", "dialogues", str(recipe)]
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(set(_results_written(tmp_path / "out"))) < 5:
        if proc.poll() is not None:
            pytest.fail("the generation finished before it could be killed: make it longer")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = set(_results_written(tmp_path / "out"))
    assert 5 <= len(finished_before) < 18
    subprocess.run(cli, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    written = _results_written(tmp_path / "out")
    assert len(written) == len(set(written)) == 18  # the runner's outputs: each conversation once
    stats = orjson.loads((tmp_path / "out" / "generation" / "conversations" / "runner_logs" /
                          "stats" / "00000.json").read_bytes())
    runner_stats = next(step["stats"] for step in stats if "Inference" in step["name"])
    assert runner_stats["documents_processed"]["total"] <= 18 - len(finished_before) + 2  # resumed, not redone

    store = ShardStore(tmp_path / "out")
    ids = [cid for kind in ("shards", "quarantine") for s in store.manifest[kind]
           for cid in pq.read_table(tmp_path / "out" / s["file"], columns=["conversation_id"]).column(0).to_pylist()]
    planned = [orjson.loads(line)["conversation_id"] for line in (tmp_path / "out" / "prompts.jsonl").read_bytes().splitlines()]
    assert len(planned) == 18 and sorted(ids) == sorted(planned)  # every conversation exactly once

    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "shards" / "*.parquet"), split="train")
    assert len(ds) == store.counts()["shards"] and len(ds) > 0
    first = ds[0]
    assert first["messages"][0]["role"] == "system" and first["messages"][1]["role"] == "user"
    conv = Conversation.from_record(orjson.loads(first["moss_record"]))
    assert conv.conversation_id == first["conversation_id"] and len(conv.turns) == first["num_turns"]
    prov = orjson.loads(first["provenance"])
    assert prov["models"]["assistant"].startswith("transformers:") and "template_hash" in prov
    assert prov["completion_tokens"] > 0


def test_reply_in_the_other_language_is_quarantined():
    router = LanguageIdentifier()
    english = Generation("The harbor was quiet at dawn, and the fishing boats waited for the tide to turn.", "stop")
    chinese = Generation("清晨的港口很安静，渔船在等待潮水转向，海鸥在天空中盘旋，远处传来钟声。", "stop")
    assert check_output(english, "reply", "en", router) == ""
    assert check_output(english, "reply", "zh", router) == "wrong_language_reply"
    assert check_output(chinese, "reply", "zh", router) == ""
    assert check_output(Generation("OK, 好的。", "stop"), "reply", "zh", router) == ""  # too short to judge
    short_english = Generation("MOSS cannot accept requests for non-functional services.", "stop")
    assert check_output(short_english, "reply", "zh", router) == "wrong_language_reply"  # script alone decides
    code_answer = Generation("可以这样写：\n```python\ndef is_palindrome(s):\n    return s == s[::-1]\n```\n这个函数比较字符串和它的反转。", "stop")
    assert check_output(code_answer, "reply", "zh", router) == ""


def test_loops_and_echoes_are_quarantined():
    loop = Generation("I'm sorry for your loss. I'm sorry for your loss. How can I help? I'm sorry for your loss.", "stop")
    assert check_output(loop, "reply") == "repetitive_reply"
    assert check_output(Generation("好的。我来写。好的。我来写一首诗。", "stop"), "reply") == ""  # short sentences don't count
    assistant = "Hello! Welcome to my world of words. I'm glad you're here. How can I assist you today?"
    parrot = Generation("Hello! Welcome to my world of words. I'm glad you're here. How can I assist you?", "stop")
    assert check_output(parrot, "user", previous=assistant) == "echo_user"
    follow_up = Generation("Could you suggest three words that rhyme with 'here'?", "stop")
    assert check_output(follow_up, "user", previous=assistant) == ""
    role_swap = Generation("Great, I'm glad you liked it. Now, how can I assist you today?", "stop")
    assert check_output(role_swap, "user") == "user_sounds_like_assistant"
    assert check_output(role_swap, "reply") == ""  # the assistant may say it


class ScriptedLLM:
    """Test double, and why: the retry logic must see exact bad and good outputs in a known order, which a sampled
    model cannot promise. It answers each request from a script and records the seeds it was asked for."""

    def __init__(self, script: list[Generation]):
        self.script, self.seeds = list(script), []

    async def chat(self, messages, params, role="assistant"):
        self.seeds.append(params.seed)
        return self.script.pop(0)


def test_failed_outputs_are_generated_again_then_quarantined():
    import asyncio
    from collections import Counter

    from moss_data.dialogue.conversation import Failed, checked
    from moss_data.llm import SamplingParams

    item = {"conversation_id": "c1", "language": "en"}
    good = Generation("Soft rain on the roof, a cat asleep by the door, tea going cold.", "stop", 5, 14)
    llm, usage = ScriptedLLM([Generation("cut off mid", "length", 5, 64), good]), Counter()
    text = asyncio.run(checked(llm, [], SamplingParams(seed=3), "reply", "assistant", item, 0, 2, None, "", usage))
    assert text == good.text and llm.seeds[0] != llm.seeds[1]  # the retry samples with another seed
    assert usage["rejected:truncated_reply"] == 1 and usage["completion_tokens"] == 64 + 14  # rejected ones count

    llm, usage = ScriptedLLM([Generation("", "stop", 5, 1)] * 2), Counter()
    with pytest.raises(Failed) as failed:
        asyncio.run(checked(llm, [], SamplingParams(seed=3), "reply", "assistant", item, 0, 2, None, "", usage))
    assert failed.value.reason == "empty_reply" and usage["rejected:empty_reply"] == 2
    other = ScriptedLLM([good])
    asyncio.run(checked(other, [], SamplingParams(seed=3), "reply", "assistant", {**item, "conversation_id": "c2"},
                        0, 2, None, "", Counter()))
    assert other.seeds[0] != llm.seeds[0]  # two conversations never share a seed for the same turn


def test_self_instruct_sends_each_round_as_rollouts(smollm2, tmp_path):
    """Self-instruct on the generation runner: a round asks for every missing prompt at once (one rollout each),
    and every answer is counted once, accepted or with its rejection reason."""
    from moss_data.dialogue.stage import DialogueRecipe, prepare_prompts

    recipe = DialogueRecipe(
        name="si", output_dir=tmp_path / "out", prompts_dir=REPO / "prompts", languages=["en"],
        categories=["writing", "code"], conversations_per_category=3, tool_traces={"enabled": False},
        self_instruct={"max_rounds": 2, "sampling": {"max_new_tokens": 64, "temperature": 0.9, "seed": 0}},
        generation={"assistant": {"model": str(smollm2)}, "max_concurrent": 8})
    items = prepare_prompts(recipe)
    rounds = sorted((recipe.output_dir / "generation").glob("self-instruct-*"))
    sent = [[orjson.loads(line)["id"] for path in (r / "output").glob("*.jsonl")
             for line in path.read_bytes().splitlines() if line.strip()] for r in rounds]
    assert 1 <= len(rounds) <= 2 and len(sent[0]) == 6  # round 0: 2 categories x 3 prompts, all in one job
    prompt_stats = orjson.loads((recipe.output_dir / "prompt_stats.json").read_bytes())
    stats = {k.split(":", 1)[1]: n for k, n in prompt_stats.items() if k.startswith("self_instruct:")}
    assert prompt_stats["planned:en:writing"] == prompt_stats["planned:en:code"] == 3
    assert sum(n for reason, n in stats.items() if reason != "lsh_comparisons") == sum(map(len, sent))
    generated = [it for it in items if it["prompt_source"] == "self-instruct"]
    assert len(generated) == stats.get("accepted", 0) and len(items) == 6
    assert len({it["prompt"] for it in items}) == 6  # seed prompts fill in without repeating one
