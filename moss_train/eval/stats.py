"""The intervals and the length control the evaluation reports with (numpy and scipy only).

- :func:`wilson`: a proportion's 95% interval (refusal rates, tool shares): right at 0 and 1, where the normal
  approximation collapses to a point; :func:`share`: a proportion of rows with it.
- :func:`bootstrap`: a statistic's 95% percentile interval over prompts resampled with replacement (win rates).
- :func:`length_controlled`: alpaca_eval's idea in its smallest form: a logistic model of the judged outcome on the
  (normalised) length difference of the two replies; the controlled win rate is its prediction at equal length, so a
  judge that prefers longer answers does not reward a checkpoint for being long. A light L2 penalty keeps the fit
  finite when every outcome is the same (then the figure sits a little inside 0 or 1).
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def share(rows: list[dict], key: str) -> dict:
    """The share of ``rows`` whose ``key`` is true: ``{rate, k, n, ci}`` (rate None when there is no row)."""
    k = sum(bool(r[key]) for r in rows)
    return {"rate": k / len(rows) if rows else None, "k": k, "n": len(rows), "ci": wilson(k, len(rows))}


def bootstrap(statistic, *columns: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of ``statistic(*columns)`` over rows resampled with replacement."""
    n = len(columns[0])
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = [statistic(*(c[idx] for c in columns)) for idx in (rng.integers(0, n, n) for _ in range(resamples))]
    lo, hi = np.percentile(values, [2.5, 97.5])
    return (float(lo), float(hi))


def length_controlled(outcomes: np.ndarray, len_model: np.ndarray, len_reference: np.ndarray,
                      l2: float = 0.01) -> float:
    """Win rate at equal length: sigmoid(b0) of the fit outcome ~ sigmoid(b0 + b1 * tanh(diff / sd(diff)))."""
    from scipy.optimize import minimize

    outcomes = np.asarray(outcomes, dtype=float)
    diff = np.asarray(len_model, dtype=float) - np.asarray(len_reference, dtype=float)
    sd = diff.std()
    x = np.tanh(diff / sd) if sd > 0 else np.zeros_like(diff)

    def loss(b):
        z = b[0] + b[1] * x
        # log(sigmoid(z)) and log(1 - sigmoid(z)), stable for large |z|
        return -np.sum(outcomes * -np.logaddexp(0, -z) + (1 - outcomes) * -np.logaddexp(0, z)) + l2 * (b @ b)

    b = minimize(loss, np.zeros(2), method="BFGS").x
    return float(1 / (1 + math.exp(-b[0])))
