"""``moss-train eval RECIPE``: every section for every checkpoint, then the judged comparisons, then the report.

One checkpoint is served at a time (a 16B model and its reference need not fit together): its answers to the
win-rate, safety, honesty and steering prompts, its tool turns, benchmarks and held-out loss are written under
``output_dir/<checkpoint>/<section>.json`` with a fingerprint of what made them (the checkpoint's spec, the
section's settings, the prompts): a re-run reuses what still matches, so a killed evaluation resumes and adding a
checkpoint costs only that checkpoint. Safety and honesty labels are recomputed from the saved replies on every run
(a corrected check needs no new replies). The judge runs last, over the saved answers; ``results.json`` and
``report.md`` (with plots) close the run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import xxhash
from loguru import logger
from tqdm import tqdm

from moss_data.io.atomic import atomic_write_json
from moss_train.eval.config import CheckpointSpec, EvalRecipe

RESULTS = "results.json"


def load_set(folder: Path, name: str, limit: int | None = None, language: str | None = None) -> list[dict]:
    path = Path(folder) / f"{name}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `moss-data eval-sets` (just eval-sets)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if language is None or r["language"] == language]
    return rows[:limit] if limit is not None else rows


class _Sections:
    """Cached per-checkpoint sections: ``get(name, settings, compute)`` returns the saved value when its
    fingerprint matches, else computes and saves it."""

    def __init__(self, folder: Path, checkpoint: CheckpointSpec):
        self.folder, self.checkpoint = Path(folder), checkpoint
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, settings, compute):
        path = self.folder / f"{name}.json"
        key = xxhash.xxh3_128_hexdigest(json.dumps([self.checkpoint.model_dump(mode="json"), settings],
                                                   sort_keys=True, default=str).encode())
        if path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("fingerprint") == key:
                logger.info(f"eval {self.checkpoint.name}: {name} reused ({path})")
                return saved["value"]
        start = time.perf_counter()
        value = compute()
        atomic_write_json(path, {"fingerprint": key, "seconds": round(time.perf_counter() - start, 1),
                                 "value": value})
        return value


def _labelled(folder: Path, name: str, value: dict) -> dict:
    """A section whose rows were labelled on this run, written beside the cached replies for reading (only when it
    changed: an unchanged re-run touches no file)."""
    path = Path(folder) / f"{name}.json"
    if not path.exists() or json.loads(path.read_text(encoding="utf-8")) != json.loads(json.dumps(value)):
        atomic_write_json(path, value)
    return value


def _steering_names(recipe: EvalRecipe) -> list[str]:
    if recipe.steering.checkpoints is not None:
        return recipe.steering.checkpoints
    return [c.name for c in recipe.checkpoints if c.quality is not None]


def evaluate_checkpoint(recipe: EvalRecipe, checkpoint: CheckpointSpec, sets: dict[str, list[dict]],
                        search_index) -> dict:
    """Every per-checkpoint section (see the module doc); returns their values."""
    from moss_data.llm.models import local_smollm2
    from moss_train.eval.answers import answer, served
    from moss_train.eval.benchmarks import run_benchmarks
    from moss_train.eval.honesty import honesty_figures, label as honesty_label
    from moss_train.eval.safety import label as safety_label, safety_figures
    from moss_train.eval.tool_use import tool_figures, tool_rows

    folder = Path(recipe.output_dir) / checkpoint.name
    cache = _Sections(folder, checkpoint)
    out: dict = {}
    a = recipe.answers.model_dump()
    with served(checkpoint, folder) as (backend, serving):
        def replies(items, quality):
            rows = []
            for start in tqdm(range(0, len(items), 16), desc=f"{checkpoint.name} answers", leave=False):
                part = items[start: start + 16]
                rows += answer(backend, [it["prompt"] for it in part], recipe.answers, quality, recipe.seed + start,
                               checkpoint.prompt_format)
            return [{"id": it["id"], "language": it["language"], "prompt": it["prompt"], **r}
                    for it, r in zip(items, rows)]

        if recipe.winrate.enabled:
            out["winrate_answers"] = cache.get("winrate_answers", [a, sets["winrate"]],
                                               lambda: replies(sets["winrate"], checkpoint.quality))
        # replies are cached; their labels are computed on every run, so a corrected check needs no new replies
        if recipe.safety.enabled:
            answered = cache.get("safety_answers", [a, sets["harmful"], sets["benign"]], lambda: {
                kind: replies(sets[kind], checkpoint.quality) for kind in ("harmful", "benign")})
            harmful = [r | safety_label("harmful", r["reply"], r["language"]) for r in answered["harmful"]]
            benign = [r | safety_label("benign", r["reply"], r["language"]) for r in answered["benign"]]
            out["safety"] = _labelled(folder, "safety", {"figures": safety_figures(harmful, benign),
                                                         "harmful": harmful, "benign": benign})
        if recipe.honesty.enabled:
            answered = cache.get("honesty_answers", [a, sets["honest"]],
                                 lambda: replies(sets["honest"], checkpoint.quality))
            rows = [r | honesty_label(it, r["reply"]) for it, r in zip(sets["honest"], answered)]
            out["honesty"] = _labelled(folder, "honesty", {"figures": honesty_figures(rows), "rows": rows})
        if recipe.tools.enabled:
            def tools():
                rows = tool_rows(backend, sets["tools"], search_index, recipe.tools.max_new_tokens,
                                 checkpoint.quality, recipe.answers.repetition_penalty)
                return {"figures": tool_figures(rows), "rows": rows}
            out["tools"] = cache.get("tools", [recipe.tools.model_dump(mode="json"), sets["tools"]], tools)
        if recipe.steering.enabled and checkpoint.name in _steering_names(recipe):
            s = recipe.steering
            out["steering_answers"] = cache.get(
                "steering_answers", [a, s.model_dump(), sets["steering"]],
                lambda: {"best": replies(sets["steering"], s.best), "worst": replies(sets["steering"], s.worst)})
        model_dir = Path(checkpoint.model or local_smollm2())
        if recipe.benchmarks.enabled:
            out["benchmarks"] = cache.get(
                "benchmarks", recipe.benchmarks.model_dump(mode="json"),
                lambda: run_benchmarks(recipe.benchmarks, model_dir, serving, folder / "benchmarks",
                                       checkpoint.quality, checkpoint.prompt_format))
    if recipe.held_out.data:
        from moss_train.eval.held_out import evaluate

        out["held_out"] = cache.get("held_out", recipe.held_out.model_dump(mode="json"),
                                    lambda: evaluate(model_dir, recipe.held_out.data,
                                                     max_conversations=recipe.held_out.max_conversations))
    return out


def run_eval(recipe: EvalRecipe) -> dict:
    """Runs the recipe (see the module doc); returns the results, also written to ``results.json``."""
    from moss_data.llm import build_backend
    from moss_train.eval.judge import PairwiseJudge
    from moss_train.eval.report import write_report
    from moss_train.eval.winrate import judged_rows, winrate_figures

    start = time.perf_counter()
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sets = prompt_sets(recipe)
    search_index = None
    if recipe.tools.enabled:
        from moss_data.tools.search import SearchIndex

        if recipe.tools.search_corpus.exists():
            search_index = SearchIndex.from_shards(recipe.tools.search_corpus)
        else:
            logger.warning(f"eval: no search corpus at {recipe.tools.search_corpus}: Search questions are left out")
            sets["tools"] = [q for q in sets["tools"] if q["tool"] != "Search"]
    per_checkpoint = {}
    for checkpoint in recipe.checkpoints:
        logger.info(f"eval: {checkpoint.name} ({checkpoint.model or 'SmolLM2-135M-Instruct'})")
        per_checkpoint[checkpoint.name] = evaluate_checkpoint(recipe, checkpoint, sets, search_index)

    results: dict = {"recipe": recipe.name, "reference": recipe.reference_name, "judge": recipe.judge.label,
                     "checkpoints": {c.name: {"model": str(c.model) if c.model else "SmolLM2-135M-Instruct",
                                              "serving": c.serving().label, "quality": c.quality,
                                              "prompt_format": c.prompt_format}
                                     for c in recipe.checkpoints},
                     "sets": {name: len(rows) for name, rows in sets.items()}, "sections": {}}
    judged = (recipe.winrate.enabled and len(recipe.checkpoints) > 1) or (
        recipe.steering.enabled and _steering_names(recipe))
    judge = PairwiseJudge(build_backend(recipe.judge)) if judged else None
    ref = per_checkpoint[recipe.reference_name]
    for name, sections in per_checkpoint.items():
        r: dict = {}
        if "winrate_answers" in sections and name != recipe.reference_name:
            rows = judged_rows(judge, sets["winrate"], sections["winrate_answers"], ref["winrate_answers"])
            r["winrate"] = {"figures": winrate_figures(rows, recipe.winrate.bootstrap, recipe.seed), "rows": rows}
        if "steering_answers" in sections:
            s = sections["steering_answers"]
            rows = judged_rows(judge, sets["steering"], s["best"], s["worst"])
            r["steering"] = {"figures": winrate_figures(rows, recipe.winrate.bootstrap, recipe.seed), "rows": rows,
                             "best": recipe.steering.best, "worst": recipe.steering.worst}
        for key in ("safety", "honesty", "tools"):
            if key in sections:
                r[key] = sections[key]["figures"]
        for key in ("benchmarks", "held_out"):
            if key in sections:
                r[key] = sections[key]
        results["sections"][name] = r
    results["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_json(out / RESULTS, results)
    write_report(results, out)
    return results


def prompt_sets(recipe: EvalRecipe) -> dict[str, list[dict]]:
    """The prompts of each section, from the eval sets (made when missing)."""
    folder = Path(recipe.eval_sets)
    if not (folder / "manifest.json").exists():
        raise FileNotFoundError(f"no eval sets in {folder}: run `moss-data eval-sets --out {folder}` "
                                "(`just eval-sets`; `just eval` does it first)")
    w = recipe.winrate
    winrate = [row for lang in w.languages for row in load_set(folder, f"winrate_{lang}", w.per_language)]
    # steering: the first prompts of each language in turn
    by_lang = [load_set(folder, f"winrate_{lang}", recipe.steering.prompts) for lang in w.languages]
    steering = [row for group in zip(*by_lang) for row in group][: recipe.steering.prompts]
    return {"winrate": winrate, "steering": steering, "tools": load_set(folder, "tools", recipe.tools.limit),
            "harmful": load_set(folder, "harmful", recipe.safety.harmful),
            "benign": load_set(folder, "benign", recipe.safety.benign),
            "honest": _honest(folder, recipe) if recipe.honesty.enabled else []}


def _honest(folder: Path, recipe: EvalRecipe) -> list[dict]:
    """The first identity and the first unanswerable questions, each kind to its own count."""
    rows = load_set(folder, "honest")
    h = recipe.honesty
    return ([r for r in rows if r["kind"] == "identity"][: h.identity]
            + [r for r in rows if r["kind"] == "unknowable"][: h.unknowable])
