"""Paired statistics of the ship gate: the same items scored for the base and the tuned model.

- binary per-item metrics (accuracy, refusal, format checks): exact McNemar test on the
  discordant pairs (statsmodels ``mcnemar(exact=True)``), which is a two-sided binomial test;
- every metric: a seeded paired bootstrap of the mean difference (vectorised numpy, checked
  against ``scipy.stats.bootstrap(paired=True)`` in the tests) for the confidence interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_RESAMPLES = 10_000
SEED = 20260101


def mcnemar_exact(base: np.ndarray, tuned: np.ndarray) -> tuple[list[list[int]], float]:
    """The 2x2 table [[both right, base only], [tuned only, both wrong]] and the exact p."""
    from statsmodels.stats.contingency_tables import mcnemar

    b = np.asarray(base).astype(bool)
    t = np.asarray(tuned).astype(bool)
    table = [[int(np.sum(b & t)), int(np.sum(b & ~t))], [int(np.sum(~b & t)), int(np.sum(~b & ~t))]]
    if table[0][1] + table[1][0] == 0:
        return table, 1.0  # no discordant pair: no evidence either way
    return table, float(mcnemar(table, exact=True).pvalue)


def bootstrap_deltas(base: np.ndarray, tuned: np.ndarray, n_resamples: int = N_RESAMPLES,
                     seed: int = SEED) -> np.ndarray:
    """Means of (tuned - base) over ``n_resamples`` paired resamples of the items."""
    d = np.asarray(tuned, dtype=float) - np.asarray(base, dtype=float)
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // max(1, len(d)))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, len(d), size=(stop - start, len(d)))
        out[start:stop] = d[idx].mean(axis=1)
    return out


def paired_bootstrap_ci(base: np.ndarray, tuned: np.ndarray, confidence: float = 0.95,
                        n_resamples: int = N_RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of the mean paired difference."""
    deltas = bootstrap_deltas(base, tuned, n_resamples, seed)
    lo, hi = np.quantile(deltas, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return float(lo), float(hi)


def is_binary(*arrays: np.ndarray) -> bool:
    return all(np.isin(np.asarray(a, dtype=float), (0.0, 1.0)).all() for a in arrays)


def compare(base: np.ndarray, tuned: np.ndarray, alpha: float) -> dict[str, Any]:
    delta = float(np.mean(tuned) - np.mean(base))
    lo, hi = paired_bootstrap_ci(base, tuned, confidence=1 - alpha)
    if is_binary(base, tuned):
        table, p = mcnemar_exact(base, tuned)
        test = f"McNemar exact (b={table[0][1]}, c={table[1][0]})"
    else:
        deltas = bootstrap_deltas(base, tuned)
        p = float((np.sum(deltas <= 0) + 1) / (len(deltas) + 1))
        test = "paired bootstrap (one-sided p)"
    return {"n": len(base), "base": float(np.mean(base)), "tuned": float(np.mean(tuned)),
            "delta": delta, "ci_low": lo, "ci_high": hi, "p": p, "test": test,
            "binary": is_binary(base, tuned)}


