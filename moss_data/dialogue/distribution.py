"""A run's category and turn distribution against MOSS's released data (DESIGN.md: moss-003-sft counts).

Released: 1,074,551 tool-free conversations (writing 341k, role-play 246k, code 198k, brainstorming 99k, complex
instruction 96k, harmless 75k, others 20k: honest and continue/switching) and ~350k with tools; average turns 5-6
for writing/role-play/code/brainstorming, ~3 for honest/harmless, 1-2 for calculator/solver/text-to-image.
Written as ``distribution.json`` and ``distribution.md`` in the run folder (and its quarantine share per category,
which says where the generating model is weakest).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from moss_data.io.atomic import atomic_write_text
from moss_data.io.conversations import manifest_path, read_conversations

# Thousands of conversations in the released data; "others" groups honest and continue/switching.
MOSS_COUNTS_K = {"writing": 341, "role-play": 246, "code": 198, "brainstorming": 99, "complex instruction": 96,
                 "harmless": 75, "others": 20, "tool": 350}
RELEASED_MEAN_TURNS = {"writing": 5.5, "role-play": 5.5, "code": 5.5, "brainstorming": 5.5, "complex instruction": None,
                   "harmless": 3.0, "others": 3.0, "tool": 1.5}
OTHERS = ("honest", "continue/switching")


def moss_group(category: str) -> str:
    return "others" if category in OTHERS else category


def distribution(run_dir: Path, quarantined: Counter | None = None) -> dict:
    """Counts, shares and mean turns per MOSS group and language, for the kept conversations of a run."""
    kept: Counter = Counter()
    turns: defaultdict[str, list[int]] = defaultdict(list)
    by_language: Counter = Counter()
    for conv, language, _ in read_conversations(run_dir):
        group = moss_group(conv.category)
        kept[group] += 1
        by_language[f"{language}:{conv.category}"] += 1
        turns[group].append(len(conv.turns))
    total, moss_total = sum(kept.values()), sum(MOSS_COUNTS_K.values())
    rows = {}
    for group in MOSS_COUNTS_K:
        rows[group] = {"kept": kept[group], "share": round(kept[group] / total, 4) if total else 0.0,
                       "moss_share": round(MOSS_COUNTS_K[group] / moss_total, 4),
                       "mean_turns": round(sum(turns[group]) / len(turns[group]), 2) if turns[group] else None,
                       "moss_mean_turns": RELEASED_MEAN_TURNS[group],
                       "quarantined": (quarantined or Counter())[group]}
    return {"kept": total, "groups": rows, "by_language_category": dict(sorted(by_language.items()))}


def quarantined_by_group(run_dir: Path) -> Counter:
    import orjson
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    for entry in orjson.loads(manifest_path(run_dir).read_bytes()).get("quarantine", []):
        for category in pq.read_table(Path(run_dir) / entry["file"], columns=["category"]).column(0).to_pylist():
            counts[moss_group(category)] += 1
    return counts


def write_report(run_dir: Path) -> dict:
    report = distribution(run_dir, quarantined_by_group(run_dir))
    atomic_write_text(run_dir / "distribution.json", json.dumps(report, indent=2, ensure_ascii=False))
    lines = ["| category | kept | share | MOSS share | mean turns | MOSS mean turns | quarantined |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for group, r in report["groups"].items():
        lines.append(f"| {group} | {r['kept']} | {r['share']:.1%} | {r['moss_share']:.1%} | "
                     f"{r['mean_turns'] if r['mean_turns'] is not None else '-'} | "
                     f"{r['moss_mean_turns'] if r['moss_mean_turns'] is not None else '-'} | {r['quarantined']} |")
    lines += ["", "Kept by language and category: " + ", ".join(f"{k} {v}" for k, v in
                                                              report["by_language_category"].items())]
    atomic_write_text(run_dir / "distribution.md", "\n".join(lines) + "\n")
    return report
