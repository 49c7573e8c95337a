"""The end-to-end demo (`just demo`, ``python -m moss_demo.demo``): the whole chain on the embedded default, on a 2-core CPU, with a summary.

corpus -> token shards -> pretrain a tiny model; dialogues -> feedback -> quality-tag conditioned SFT and DPO of
SmolLM2-135M -> a scripted chat turn that calls the calculator -> the evaluation's report comparing the base,
SFT and DPO checkpoints (``recipes/eval/demo.yaml``). Each step is the same code the `just` recipes
run, with the demo recipes in ``recipes/*/demo.yaml`` (smaller than the defaults). The summary (steps, seconds,
figures) is printed and written to ``data/demo/summary.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from loguru import logger

from moss_data.io.atomic import atomic_write_text
from moss_data.io.pairs import count_pairs
from moss_data.io.tokens import TokenCorpus
from moss_data.recipe import load_recipe
from moss_train.config import final_dir, summary_path

OUT = Path("data/demo")


def _timed(name: str, steps: list[dict], fn):
    start = time.perf_counter()
    logger.info(f"demo: {name} ...")
    result = fn()
    steps.append({"step": name, "seconds": round(time.perf_counter() - start, 1), **(result or {})})
    return result


def corpus_step() -> dict:
    from moss_data.chain.recipe import CorpusRecipe
    from moss_data.chain.run import run_corpus

    cfg = load_recipe(Path("recipes/corpus/sample.yaml"), CorpusRecipe)
    run_corpus(cfg)
    mix = TokenCorpus(cfg.output_dir).mix_manifest()
    return {"figures": f"mixed tokens {sum(mix['mixed_tokens'].values())}, ratio "
                       + " / ".join(f"{r} {v:.2f}" for r, v in mix["achieved_ratio"].items())}


def pretrain_step() -> dict:
    from moss_train.pretrain import PretrainRecipe, run_pretrain

    cfg = load_recipe(Path("recipes/train/pretrain_cpu.yaml"), PretrainRecipe)
    s = run_pretrain(cfg.model_copy(update={"output_dir": OUT / "pretrain"}))
    return {"figures": f"{s['steps']} steps, loss {s['first_loss']:.2f} -> {s['last_loss']:.2f}, "
                       f"packing {s['packing_efficiency']:.2f}"}


def dialogues_step() -> dict:
    from moss_data.dialogue.stage import DialogueRecipe, run_dialogues

    s = run_dialogues(load_recipe(Path("recipes/dialogue/demo.yaml"), DialogueRecipe))
    return {"figures": f"{s['shards']} kept, {s['quarantine']} quarantined"}


def feedback_step() -> dict:
    from moss_data.feedback.external import fetch_preference_sets
    from moss_data.feedback.stage import FeedbackRecipe, run_feedback

    try:
        fetch_preference_sets()
    except RuntimeError as e:
        logger.warning(f"demo: external preference set not fetched ({e}); its figure is left out")
    s = run_feedback(load_recipe(Path("recipes/feedback/demo.yaml"), FeedbackRecipe))
    return {"figures": f"parse rate {s['judge']['parse_rate']}, pairs {s['pairs']['train']}+{s['pairs']['heldout']}, "
                       f"tags {s['tags']['distribution']} from the {s['tags']['source']}"}


def sft_step() -> dict:
    from moss_train.sft import SFTRecipe, run_sft

    cfg = load_recipe(Path("recipes/train/sft_demo.yaml"), SFTRecipe)
    run_sft(cfg)
    s = json.loads(summary_path(cfg.output_dir).read_text())
    return {"figures": f"{s['steps']} steps, loss {s['train_loss']:.3f} ({s['loss_mask']} mask)"}


def dpo_step() -> dict:
    from moss_train.dpo import DPORecipe, run_dpo

    cfg = load_recipe(Path("recipes/train/dpo_demo.yaml"), DPORecipe)
    pairs = count_pairs(cfg.feedback_dir)
    if not pairs:
        return {"figures": "skipped: the judge produced no training pair with a score margin"}
    run_dpo(cfg)
    s = json.loads(summary_path(cfg.output_dir).read_text())
    return {"figures": f"{s['steps']} steps on {pairs} pairs, loss {s['train_loss']:.3f}"}


def chat_step() -> dict:
    from moss_data.llm import SamplingParams
    from moss_data.llm.transformers_backend import TransformersBackend
    from moss_data.formats import Capabilities, Command, Turn
    from moss_data.tools.chat_loop import MossChat
    from moss_data.tools.registry import ToolRegistry

    model = final_dir(OUT / "dpo") if final_dir(OUT / "dpo").exists() else final_dir(OUT / "sft")
    caps = Capabilities(calculator=True)
    registry = ToolRegistry(caps)
    chat = MossChat(TransformersBackend(model, batch_size=1), caps, registry,
                    SamplingParams(max_new_tokens=64, temperature=0), quality=5)
    # Two real calculator turns as history: a few steps of SFT do not teach a 135M model the tool format alone.
    for question, expression, reply in [("What is 12 plus 30?", "12+30", "12 + 30 = 42."),
                                        ("How much is 7 times 9?", "7*9", "7 × 9 = 63.")]:
        results = registry.execute(f'Calculate("{expression}")').text
        chat.history.append(Turn(question, reply, "I should use the calculator.", [Command("Calculate", expression)],
                                 results, quality=5))
    out = chat.send("What is 36 times 24?")
    return {"figures": f"commands {[c.render() for c in out.turn.commands]}, results {out.turn.results!r}, "
                       f"reply {out.turn.moss[:80]!r}", "problems": out.problems}


def eval_step() -> dict:
    from moss_data.dialogue.eval_sets import write_eval_sets
    from moss_train.eval.config import EvalRecipe
    from moss_train.eval.run import run_eval

    from moss_train.eval.benchmark_data import fetch_benchmark_data

    cfg = load_recipe(Path("recipes/eval/demo.yaml"), EvalRecipe)
    write_eval_sets(cfg.eval_sets)
    fetch_benchmark_data()
    if not final_dir(OUT / "dpo").exists():  # the DPO step had no pair to train on
        cfg = cfg.model_copy(update={"checkpoints": [c for c in cfg.checkpoints if c.name != "dpo"]})
    r = run_eval(cfg)["sections"]
    parts = []
    for name, s in r.items():
        w = s.get("winrate", {}).get("figures", {}).get("all")
        bits = [f"win rate vs base {100 * w['win_rate']:.0f}%" if w else "",
                f"refusal {100 * s['safety']['refusal_rate']['rate']:.0f}%" if "safety" in s else "",
                f"right tool {100 * s['tools']['all']['right_tool']['rate']:.0f}%" if "tools" in s else ""]
        parts.append(f"{name}: " + ", ".join(b for b in bits if b))
    return {"figures": "; ".join(parts) + f" (report: {cfg.output_dir}/report.md)"}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    steps: list[dict] = []
    start = time.perf_counter()
    for name, fn in [("corpus", corpus_step), ("pretrain", pretrain_step), ("dialogues", dialogues_step),
                     ("feedback", feedback_step), ("sft", sft_step), ("dpo", dpo_step), ("chat", chat_step),
                     ("eval", eval_step)]:
        _timed(name, steps, fn)
    total = round(time.perf_counter() - start, 1)
    lines = ["# Demo summary", "", "| step | seconds | figures |", "|---|---|---|",
             *[f"| {s['step']} | {s['seconds']} | {s['figures']} |" for s in steps], "",
             f"Total: {total} s. Outputs under data/sample/corpus and data/demo/."]
    atomic_write_text(OUT / "summary.md", "\n".join(lines) + "\n")
    atomic_write_text(OUT / "summary.json", json.dumps({"steps": steps, "total_seconds": total}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":  # pragma: no cover
    main()
