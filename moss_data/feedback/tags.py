"""Step 5: quality tags. Each original response gets a tag 1-5 from the reward model (thresholds set so that the
judged candidates' tags reproduce the judge's distribution: quantile matching) or, without a reward model, from the
judge; ``untagged_share`` of the responses stay untagged on purpose (chosen by a hash of the id, stable across runs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from moss_data.feedback.contexts import Context, stable_hash
from moss_data.formats import QUALITY_LEVELS, Conversation, Turn, candidate_id, response_id

Tags = dict[str, int | None]  # response id -> tag (None: untagged)


def quantile_thresholds(scores: np.ndarray, judge_levels: list[int]) -> np.ndarray:
    """Reward-score cut points between tags 1..5 such that the calibration scores, bucketed, reproduce the judge's
    tag distribution (quantile matching); ``searchsorted(thresholds, s, side="left") + 1`` is the tag (a score on a
    cut point takes the lower tag, so a level the judge never gave is never assigned)."""
    counts = np.bincount(np.asarray(judge_levels) - 1, minlength=len(QUALITY_LEVELS))
    cumulative = np.cumsum(counts)[:-1] / max(counts.sum(), 1)
    return np.quantile(scores, cumulative) if len(scores) else np.zeros(len(QUALITY_LEVELS) - 1)


def assign_tags(contexts: list[Context], by_context: dict[str, list[dict]], judged: Callable[[str], dict | None],
                reward_model, untagged_share: float) -> tuple[Tags, str]:
    """Tags per response id and their source (``reward_model`` or ``judge``)."""
    if reward_model is not None:
        calibration = [(c, cand, j) for c in contexts for cand in by_context[c.context_id] if (j := judged(cand["key"]))]
        calib = reward_model.score([c.prompt for c, _, _ in calibration], [cand["text"] for _, cand, _ in calibration])
        thresholds = quantile_thresholds(np.array(calib), [j["overall"] for _, _, j in calibration])
        scores = reward_model.score([c.prompt for c in contexts], [c.original for c in contexts])
        tags: Tags = {c.context_id: int(np.searchsorted(thresholds, s, side="left")) + 1 for c, s in zip(contexts, scores)}
        source = "reward_model"
    else:
        tags = {c.context_id: (judged(candidate_id(c.context_id, 0)) or {}).get("overall") for c in contexts}
        source = "judge"
    for cid in tags:
        if stable_hash(f"untagged:{cid}") % 10_000 < untagged_share * 10_000:
            tags[cid] = None
    return tags, source


def tagged(conv: Conversation, tags: Tags) -> Conversation:
    """The conversation with each response's tag set (None where untagged)."""
    turns = [Turn(t.human, t.moss, t.inner_thoughts, t.commands, t.results, tags.get(response_id(conv.conversation_id, i)))
             for i, t in enumerate(conv.turns)]
    return Conversation(conv.conversation_id, conv.category, turns, conv.capabilities)
