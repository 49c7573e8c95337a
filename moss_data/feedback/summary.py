"""Step 6: the figures of a feedback run (``summary.json``, rendered by :mod:`moss_data.feedback.report`)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from moss_data.feedback.judging import ORDERS, Item, Judging, again_key, verdict_key
from moss_data.formats import QUALITY_LEVELS, parse_candidate_id
from moss_data.feedback.tags import Tags


def summarize(judging: Judging, items: list[Item], sample: list[Item], compared: list[str], pairs: list[dict],
              reward_figures: dict | None, tags: Tags, tag_source: str, untagged_share: float,
              tagged_conversations: int) -> dict:
    rows = [judging.judgements.rows[k] for k, _, _ in items if k in judging.judgements]
    reasons = Counter(r["reason"] for r in rows if not r["ok"])
    twice = [(judging.judged(k), judging.judged(again_key(k))) for k, _, _ in sample]
    twice = [(a, b) for a, b in twice if a and b]
    verdicts = [judging.verdicts.rows.get(verdict_key(cid, o)) for cid in compared for o in ORDERS]
    parsed = [v for v in verdicts if v and v["ok"]]
    both = [tuple(judging.verdicts.rows[verdict_key(cid, o)] for o in ORDERS) for cid in compared
            if all(judging.verdicts.rows.get(verdict_key(cid, o), {}).get("ok") for o in ORDERS)]

    def winner(v):
        return v["a"] if v["better"] == "A" else v["b"] if v["better"] == "B" else "tie"

    tag_counts = Counter("untagged" if t is None else str(t) for t in tags.values())
    return {
        "responses": len({parse_candidate_id(k)[0] for k, _, _ in items}),
        "candidates": len(items),
        "judge": {"judged": len(rows), "parsed": sum(r["ok"] for r in rows),
                  "parse_rate": round(sum(r["ok"] for r in rows) / max(len(rows), 1), 4),
                  "quarantined_by_reason": dict(reasons),
                  "modes": dict(Counter(r.get("mode", "") for r in rows))},
        "self_consistency": {"judged_twice": len(twice),
                             "overall_agreement": _rate(sum(a["overall"] == b["overall"] for a, b in twice), len(twice)),
                             "mean_abs_overall_diff": _mean([abs(a["overall"] - b["overall"]) for a, b in twice])},
        "position_bias": {"comparisons": len(verdicts), "parsed": len(parsed),
                          "first_position_rate": _rate(sum(v["better"] == "A" for v in parsed), len(parsed)),
                          "pairs_in_both_orders": len(both),
                          "order_consistency": _rate(sum(winner(x) == winner(y) for x, y in both), len(both))},
        "pairs": {"train": sum(p["split"] == "train" for p in pairs),
                  "heldout": sum(p["split"] == "heldout" for p in pairs)},
        "reward_model": reward_figures,
        "tags": {"source": tag_source, "untagged_share_target": untagged_share,
                 "distribution": {k: tag_counts.get(k, 0) for k in [*map(str, QUALITY_LEVELS), "untagged"]}},
        "tagged_conversations": tagged_conversations,
    }


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None
