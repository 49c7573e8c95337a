"""Step 3: preference pairs. Per response the best judged candidate that passes the checks (chosen) and the worst
judged one (rejected), when their overall scores differ by at least ``min_margin``; split train/held-out by a hash
of the response id (the same in every run). Written with :mod:`moss_data.io.pairs`, lossless."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from moss_data.feedback.contexts import Context, stable_hash
from moss_data.feedback.rubric import ASPECTS
from moss_data.formats import Conversation, parse_response_id


def build_pairs(contexts: list[Context], by_context: dict[str, list[dict]], judged: Callable[[str], dict | None],
                min_margin: int, heldout_share: float, judge_label: str) -> list[dict]:
    pairs = []

    def rank(jc):
        return jc[0]["overall"], sum(jc[0][a] for a in ASPECTS)

    for c in contexts:
        scored = [(j, cand) for cand in by_context[c.context_id] if (j := judged(cand["key"]))]
        eligible = [jc for jc in scored if jc[1]["passes_checks"]]
        if len(scored) < 2 or not eligible:
            continue
        best, worst = max(eligible, key=rank), min(scored, key=rank)
        if best[0]["overall"] - worst[0]["overall"] < min_margin:
            continue
        pairs.append({
            "context_id": c.context_id, "language": c.language, "category": c.category,
            "split": "heldout" if stable_hash(c.context_id) % 1000 < heldout_share * 1000 else "train",
            "prompt": c.prompt,
            "chosen": [{"role": "assistant", "content": best[1]["text"]}],
            "rejected": [{"role": "assistant", "content": worst[1]["text"]}],
            "score_chosen": best[0]["overall"], "score_rejected": worst[0]["overall"],
            "provenance": orjson.dumps({"judge": judge_label, "judge_mode": best[0].get("mode"),
                                        "chosen": best[1]["key"], "rejected": worst[1]["key"],
                                        "chosen_source": best[1]["source"],
                                        "rejected_source": worst[1]["source"]}).decode(),
        })
    return pairs


def with_prompts_from(pairs: list[dict], conversations: dict[str, Conversation]) -> list[dict]:
    """The pairs with each prompt taken from the (tagged) conversation it belongs to, so the pairs file holds exactly
    the context the reply answers at inference: earlier turns with their quality tags, thoughts, tool calls, results."""
    out = []
    for p in pairs:
        conversation_id, turn = parse_response_id(p["context_id"])
        out.append(p | {"prompt": conversations[conversation_id].prompt_messages(turn)})
    return out
