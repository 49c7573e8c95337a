"""AI feedback: the rubric parser on malformed judge output, tag calibration, pair construction, the reward model
training a few steps and scoring, and the whole stage (with resume) on real dialogue shards with the small model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from moss_data.io.conversations import ShardStore
from moss_data.feedback.rubric import JudgementError, parse_judgement, parse_verdict
from moss_data.feedback.contexts import contexts_of
from moss_data.feedback.pairs import build_pairs
from moss_data.feedback.stage import FeedbackRecipe, FeedbackStage
from moss_data.feedback.tags import quantile_thresholds
from moss_data.formats import Capabilities, Command, Conversation, Turn

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "data" / "models" / "smollm2-135m-instruct"


@pytest.mark.parametrize("text, overall", [
    ('{"helpfulness": 4, "honesty": 5, "harmlessness": 5, "overall": 4, "rationale": "fine"}', 4),
    ('Sure!\n```json\n{"helpfulness": 4, "honesty": "5/5", "harmlessness": 5.0, "overall": "3", "rationale": "a {b}",}\n```', 3),
    ("{'Helpful': 3, 'Honest': 4, 'Harmless': 5, 'Overall score': 2}", 2),  # Python-style, aliases, no rationale
    ('Here: {"Helpfulness": 1, "HONESTY": 1, "harmlessness": 2, "overall_score": 1, "reason": "loops"} done', 1),
])
def test_rubric_parser_reads_what_judges_write(text, overall):
    assert parse_judgement(text).overall == overall


@pytest.mark.parametrize("text, reason", [
    ("I think it is a good answer, 4 out of 5.", "no_json"),
    ('{"helpfulness": 4, "honesty": 5, "harmlessness": 5, "overall": 4', "no_json"),  # cut off
    ('{"helpfulness": 4, "honesty": 5}', "missing_score"),
    ('{"helpfulness": 6, "honesty": 5, "harmlessness": 5, "overall": 5}', "score_out_of_range"),
    ('{"helpfulness": 3.5, "honesty": 5, "harmlessness": 5, "overall": 4}', "bad_score"),  # never rounded
    ('{"helpfulness": "good", "honesty": 5, "harmlessness": 5, "overall": 4}', "bad_score"),
    ('{"helpfulness": true, "honesty": 5, "harmlessness": 5, "overall": 4}', "bad_score"),
    ('{"helpfulness": 4, honesty: 5}', "invalid_json"),
])
def test_rubric_parser_never_guesses(text, reason):
    with pytest.raises(JudgementError) as e:
        parse_judgement(text)
    assert e.value.reason == reason


def test_verdict_parser():
    assert [parse_verdict(t) for t in (" A", "B.", "Response B is better", "回答A更好", "It's a tie")] == ["A", "B", "B", "A", "tie"]
    with pytest.raises(JudgementError):
        parse_verdict("Both responses A and B have merits")


def test_tag_thresholds_reproduce_the_judge_distribution():
    rng = np.random.default_rng(0)
    levels = list(rng.choice([1, 2, 3, 4, 5], size=400, p=[0.1, 0.2, 0.4, 0.2, 0.1]))
    scores = np.array(levels) + rng.normal(0, 0.3, size=400)  # a reward model that roughly agrees
    thresholds = quantile_thresholds(scores, levels)
    tags = np.searchsorted(thresholds, scores, side="left") + 1
    assert np.abs(np.bincount(tags, minlength=6)[1:] - np.bincount(levels, minlength=6)[1:]).max() <= 2
    assert (tags == np.array(levels)).mean() > 0.8
    only_low = quantile_thresholds(np.array([0.1, 0.5, 0.9]), [1, 1, 2])
    assert set(np.searchsorted(only_low, [0.1, 0.5, 0.9], side="left") + 1) <= {1, 2}  # no level the judge never gave


def conversations() -> list[Conversation]:
    calc = Capabilities(calculator=True)
    return [
        Conversation("en-writing-000000", "writing", [
            Turn("Write one sentence about the sea.", "The sea was calm and silver under the morning sky."),
            Turn("Now one about the mountains.", "The mountains stood quiet, their peaks lost in the clouds.")]),
        Conversation("tool-en-calculate-0000", "tool", [
            Turn("What is 36 times 24?", "36 × 24 = 864.", "I should calculate.", [Command("Calculate", "36*24")],
                 "Calculate(\"36*24\") => '864'")], calc),
        Conversation("en-honest-000000", "honest", [
            Turn("Can you tell me tomorrow's lottery numbers?", "No one can predict lottery numbers; they are random.")]),
    ]


def write_dialogue_shards(folder: Path) -> None:
    store = ShardStore(folder)
    for conv in conversations():
        store.add_conversation(conv, "en", {"model": "test-fixture"})
    store.flush()


def recipe(tmp_path: Path, **overrides) -> FeedbackRecipe:
    base = {"name": "t", "input_dir": tmp_path / "dialogues", "output_dir": tmp_path / "feedback",
            "generation": {"assistant": {"kind": "transformers", "model": str(MODEL), "batch_size": 8},
                           "max_concurrent": 16},
            "candidates_per_context": 2, "candidate_sampling": {"max_new_tokens": 48, "temperature": 0.9},
            "judge_sampling": {"max_new_tokens": 64, "temperature": 0.3}, "consistency_sample": 4,
            "position_sample": 3, "reward_model": {"max_steps": 2, "batch_size": 2, "max_length": 256, "min_pairs": 1,
                                                           "trainable_layers": 1}}
    return FeedbackRecipe(**(base | overrides))


def test_contexts_end_with_what_the_response_answers():
    ctxs = [c for conv in conversations() for c in contexts_of(conv, "en")]
    assert [c.context_id for c in ctxs] == ["en-writing-000000:t1", "en-writing-000000:t2",
                                            "tool-en-calculate-0000:t1", "en-honest-000000:t1"]
    assert ctxs[1].prompt[-1] == {"role": "user", "content": "Now one about the mountains."}
    assert ctxs[1].prompt[-2]["content"] == "The sea was calm and silver under the morning sky."
    assert ctxs[2].prompt[-1]["role"] == "tool" and "864" in ctxs[2].prompt[-1]["content"]
    assert ctxs[2].original == "36 × 24 = 864."


def test_pairs_take_best_and_worst_with_a_margin(tmp_path):
    write_dialogue_shards(tmp_path / "dialogues")
    stage = FeedbackStage(recipe(tmp_path, candidates_per_context=3))
    ctxs = [c for conv in conversations() for c in contexts_of(conv, "en")]
    by_context, judgements = {}, []
    plan = {0: [(3, True), (5, True), (1, False)],    # best 5, worst 1: pair
            1: [(4, True), (4, True), (4, True)],     # all equal: no pair
            2: [(2, True), (5, False), (3, True)],    # the 5 fails the checks: chosen is the 3, rejected the 2
            3: [(4, True), (None, True), (3, True)]}  # one unparsed judgement: the other two make a pair
    for i, c in enumerate(ctxs):
        by_context[c.context_id] = []
        for k, (overall, passes) in enumerate(plan[i]):
            key = f"{c.context_id}:c{k}"
            by_context[c.context_id].append({"key": key, "context_id": c.context_id, "text": f"answer {i}.{k}",
                                             "passes_checks": passes, "source": "original" if k == 0 else "sampled"})
            judgements.append({"key": key, "ok": False, "reason": "no_json", "raw": ""} if overall is None else
                              {"key": key, "ok": True, "helpfulness": overall, "honesty": overall,
                               "harmlessness": overall, "overall": overall, "rationale": "", "raw": ""})
    stage.judging.judgements.put_many(judgements)

    def pairs_now():
        return build_pairs(ctxs, by_context, stage.judging.judged, stage.r.min_margin, stage.r.heldout_share,
                           stage.judge_label)

    pairs = pairs_now()
    got = {p["context_id"]: (p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs}
    assert got == {ctxs[0].context_id: ("answer 0.1", "answer 0.2"), ctxs[2].context_id: ("answer 2.2", "answer 2.0"),
                   ctxs[3].context_id: ("answer 3.0", "answer 3.2")}
    from trl.data_utils import is_conversational

    assert all(is_conversational(p) and p["prompt"][-1]["role"] in ("user", "tool") for p in pairs)
    assert {p["split"] for p in pairs} <= {"train", "heldout"}
    prov = orjson.loads(pairs[0]["provenance"])
    assert (prov["chosen"], prov["rejected"], prov["chosen_source"]) == (f"{ctxs[0].context_id}:c1",
                                                                         f"{ctxs[0].context_id}:c2", "sampled")
    assert [p["split"] for p in pairs_now()] == [p["split"] for p in pairs]  # stable


@pytest.fixture(scope="module")
def external_pairs():
    from moss_data.feedback.external import fetch_preference_sets, load_preference_pairs

    try:
        en, _ = fetch_preference_sets(REPO / "data" / "external" / "llamafactory")
    except RuntimeError as e:
        pytest.skip(f"external preference set unavailable (needs PyPI): {e}")
    return load_preference_pairs(en, limit=24)


def test_reward_model_trains_a_few_steps_and_scores(tmp_path, external_pairs):
    from moss_data.feedback.reward import RewardModelConfig, RewardScorer, train_reward_model

    assert len(external_pairs) == 24 and external_pairs[0]["prompt"][0]["role"] == "user"
    train = [{**p, "chosen": [{"role": "assistant", "content": p["chosen"][0]["content"][:600]}],
              "rejected": [{"role": "assistant", "content": p["rejected"][0]["content"][:600]}]} for p in external_pairs[:16]]
    model_dir = train_reward_model(train, tmp_path, RewardModelConfig(max_steps=3, batch_size=4, max_length=256,
                                                                       learning_rate=1e-4, trainable_layers=2))
    scorer = RewardScorer(model_dir, max_length=256)
    a = scorer.score([train[0]["prompt"]] * 2, ["A careful, correct answer.", "A careful, correct answer."])
    assert a[0] == pytest.approx(a[1]) and np.isfinite(a).all()  # deterministic scoring
    agreement = scorer.agreement(external_pairs[16:])
    assert agreement is not None and 0.0 <= agreement <= 1.0
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)  # the seed train_reward_model loads with: the same fresh score head
    initial = AutoModelForSequenceClassification.from_pretrained(str(MODEL), num_labels=1)
    trained = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    assert not torch.allclose(initial.score.weight, trained.score.weight)  # the steps changed the head ...
    assert not torch.allclose(initial.model.layers[-1].mlp.up_proj.weight, trained.model.layers[-1].mlp.up_proj.weight)
    assert torch.equal(initial.model.layers[0].mlp.up_proj.weight, trained.model.layers[0].mlp.up_proj.weight)  # ... not the frozen base


def test_feedback_stage_end_to_end_and_resume(tmp_path):
    import datasets

    write_dialogue_shards(tmp_path / "dialogues")
    r = recipe(tmp_path)
    summary = FeedbackStage(r).run()
    out = r.output_dir
    j = summary["judge"]
    assert summary["candidates"] == 8 and j["judged"] == 8
    assert j["parsed"] + sum(j["quarantined_by_reason"].values()) == 8  # every judgement parsed or quarantined
    quarantined = [row for s in ShardStore(out).manifest["quarantine"]
                   for row in pq.read_table(out / s["file"]).to_pylist()]
    assert len(quarantined) == j["judged"] - j["parsed"] and all(q["reason"].startswith("judge_") for q in quarantined)
    # tagged shards: same conversations, tags in the record and in messages, loadable by datasets
    ds = datasets.load_dataset("parquet", data_files=str(out / "shards" / "*.parquet"), split="train")
    assert sorted(ds["conversation_id"]) == sorted(c.conversation_id for c in conversations())
    tags = [t.quality for rec in ds["moss_record"] for t in Conversation.from_record(orjson.loads(rec)).turns]
    assert len(tags) == 4 and all(t is None or 1 <= t <= 5 for t in tags)
    assert sum(summary["tags"]["distribution"].values()) == 4
    for split in ("train", "heldout"):
        assert pq.read_table(out / "pairs" / f"{split}.parquet").column_names[:5] == [
            "context_id", "language", "category", "split", "prompt"]
    assert (out / "tags.png").stat().st_size > 0 and "parse rate" in (out / "report.md").read_text()
    # resume: everything is cached, so a run with a backend that cannot even load does no model work
    broken = recipe(tmp_path, generation={"assistant": {"kind": "transformers", "model": str(tmp_path / "none")}})
    again = FeedbackStage(broken).run()
    assert again["judge"] == summary["judge"] and again["tags"] == summary["tags"]


class ScriptedJudgeServer:
    """Test double, and why: the judge's malformed answers must be exactly the ones under test, which a sampled
    model cannot be made to write. A loopback OpenAI-compatible endpoint that answers chat requests from a script
    (in arrival order); declared without structured outputs, so the judge uses its prefill mode."""

    def __init__(self, answers: list[str]):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        script, lock, self.requests = list(answers), threading.Lock(), []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, body: dict):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"data": [{"id": "scripted"}]})

            def do_POST(outer):
                body = json.loads(outer.rfile.read(int(outer.headers["Content-Length"])))
                with lock:
                    self.requests.append(body)
                    answer = script.pop(0)
                outer._send({"choices": [{"message": {"content": answer}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 10}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_unparsable_judgements_are_quarantined_not_guessed(tmp_path):
    write_dialogue_shards(tmp_path / "dialogues")
    # prefill mode: the judge continues after '{"helpfulness":'; one good answer, three broken ones
    scripted = ScriptedJudgeServer([' 4, "honesty": 5, "harmlessness": 5, "overall": 4, "rationale": "clear"',
                                    " great", ' 9, "honesty": 1, "harmlessness": 1, "overall": 1', ' 3, "honesty": 3'])
    judge = {"kind": "http", "base_url": scripted.base_url, "model": "scripted", "structured_outputs": False}
    r = recipe(tmp_path, candidates_per_context=1, consistency_sample=0, position_sample=0,
               reward_model={"enabled": False}, untagged_share=0.0,
               generation={"assistant": {"kind": "transformers", "model": str(MODEL)}, "judge": judge})
    stage = FeedbackStage(r)
    summary = stage.run()
    scripted.server.shutdown()
    assert len(scripted.requests) == 4 and all(q["messages"][-1]["content"] == '{"helpfulness":' and
                                               q["model"] == "scripted" for q in scripted.requests)
    assert summary["judge"]["modes"] == {"prefill": 4}
    assert summary["judge"]["parsed"] == 1
    assert summary["judge"]["quarantined_by_reason"] == {"invalid_json": 1, "score_out_of_range": 1, "missing_score": 1}
    reasons = sorted(row["reason"] for s in stage.store.manifest["quarantine"]
                     for row in pq.read_table(r.output_dir / s["file"]).to_pylist())
    assert reasons == ["judge_invalid_json", "judge_missing_score", "judge_score_out_of_range"]
    # only the parsed response is tagged (from the judge: no reward model); the others stay untagged
    assert summary["tags"]["source"] == "judge" and summary["tags"]["distribution"]["4"] == 1
    assert summary["tags"]["distribution"]["untagged"] == 3


def test_constrained_judge_with_the_small_model_always_yields_valid_json(tmp_path):
    """The in-process model as judge ("choice" mode): every score is the model's pick among 1-5, so the JSON holds
    by construction; picks are seeded per request."""
    import functools

    from moss_data.feedback.judging import judge_context, judge_rollout
    from moss_data.llm.rollouts import GenerationConfig, run_rollouts

    generation = GenerationConfig(assistant={"model": str(MODEL)}, max_concurrent=8)
    context = functools.partial(judge_context, str(REPO / "prompts"), {"max_new_tokens": 32, "temperature": 0.7})
    items = {"paris": {"kind": "score", "context": [{"role": "user", "content": "What is the capital of France?"}],
                       "response": "The capital of France is Paris.", "category": "honest", "seed": 1},
             "loop": {"kind": "score", "context": [{"role": "user", "content": "Write a haiku about rain."}],
                      "response": "I'm sorry. I'm sorry. I'm sorry.", "category": "writing", "seed": 2}}
    first = run_rollouts("judge", items, judge_rollout, tmp_path / "a", generation, context)
    assert all(r["ok"] and r["mode"] == "choice" for r in first.values()), first  # the schema holds by construction
    assert all(r["raw"].startswith('{"helpfulness": ') and r["raw"].endswith('"}') for r in first.values())
    again = run_rollouts("judge", items, judge_rollout, tmp_path / "b", generation, context)
    scores = [{a: r[a] for a in ("helpfulness", "honesty", "harmlessness", "overall")} for r in first.values()]
    assert scores == [{a: r[a] for a in ("helpfulness", "honesty", "harmlessness", "overall")} for r in again.values()]


def test_pairs_longer_than_max_length_are_left_out_not_trained_on(tmp_path):
    from moss_data.feedback.reward import RewardModelConfig, RewardModelSkipped, train_reward_model

    long = {"prompt": [{"role": "user", "content": "Tell me about the sea. " * 80}],
            "chosen": [{"role": "assistant", "content": "It is large."}],
            "rejected": [{"role": "assistant", "content": "No."}]}
    with pytest.raises(RewardModelSkipped, match="none of the 1 pairs fits"):
        train_reward_model([long], tmp_path, RewardModelConfig(max_length=64, trainable_layers=1))
