"""Pairwise win rate: a checkpoint's replies against a reference's (the base model, the previous checkpoint) on the
same prompts, judged in both orders (:class:`~moss_train.eval.judge.PairwiseJudge`). The preference-aware
steering figure is the same comparison between one checkpoint's replies under the best and the worst quality tag.

Figures per language and overall: wins (both orders prefer the checkpoint), losses, ties (the rest: a tie verdict
or an order-dependent one); the win rate (mean outcome: win 1, tie 0.5, order-dependent 0.25 / 0.75) with a
bootstrap 95% interval over prompts; the length-controlled win rate (:func:`~moss_train.eval.stats.
length_controlled`) with its interval; the share of prompts the judge answered the same in both orders
(``consistency``: a judge near 0 is reading positions, not replies).
"""

from __future__ import annotations

import numpy as np

from moss_train.eval.stats import bootstrap, length_controlled


def judged_rows(judge, items: list[dict], model: list[dict], reference: list[dict]) -> list[dict]:
    """One row per prompt: its verdicts and outcome, with both replies' lengths (characters)."""
    verdicts = judge.compare([it["prompt"] for it in items], [m["reply"] for m in model],
                             [r["reply"] for r in reference])
    return [{"id": it["id"], "language": it["language"], "len_model": len(m["reply"]),
             "len_reference": len(r["reply"]), **v} for it, m, r, v in zip(items, model, reference, verdicts)]


def _figures(rows: list[dict], resamples: int, seed: int) -> dict:
    o = np.array([r["outcome"] for r in rows], dtype=float)
    lm = np.array([r["len_model"] for r in rows], dtype=float)
    lr = np.array([r["len_reference"] for r in rows], dtype=float)
    if not len(o):
        return {"n": 0}
    return {"n": len(o), "wins": int((o == 1).sum()), "losses": int((o == 0).sum()),
            "ties": int(((o > 0) & (o < 1)).sum()),
            "win_rate": float(o.mean()), "ci": bootstrap(np.mean, o, resamples=resamples, seed=seed),
            "lc_win_rate": length_controlled(o, lm, lr),
            "lc_ci": bootstrap(length_controlled, o, lm, lr, resamples=min(resamples, 300), seed=seed),
            "consistency": float(np.mean([r["consistent"] for r in rows])),
            "mean_chars": {"model": float(lm.mean()), "reference": float(lr.mean())}}


def winrate_figures(rows: list[dict], resamples: int = 2000, seed: int = 0) -> dict:
    out = {"all": _figures(rows, resamples, seed)}
    for lang in sorted({r["language"] for r in rows}):
        out[lang] = _figures([r for r in rows if r["language"] == lang], resamples, seed)
    return out
