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




POWER_TARGET = 0.8  # the smallest margin a guard can demonstrate is reported at this power


def non_inferiority(base: np.ndarray, tuned: np.ndarray, margin: float,
                    alpha: float) -> dict[str, Any]:
    """Is ``tuned`` non-inferior to ``base`` by ``margin``, item by item?

    - ``margin == 0``: no item may get worse; the bound is the worst item's change
      (``min(tuned - base)``), an exact rule, not an estimate.
    - ``margin > 0``: the one-sided ``1 - alpha`` lower confidence bound of the mean paired
      difference from the paired t distribution, ``mean - t(1 - alpha, n - 1) * sd / sqrt(n)``
      (for 0/1 metrics this is the Wald bound of the difference of paired proportions with a
      t quantile); the guard passes when ``bound >= -margin``. Also reported: the power of that
      test when the true difference is 0 and the spread is the observed one,
      ``Phi(margin / se - t)``, and the smallest margin this suite demonstrates with
      ``POWER_TARGET`` power, ``(t + z(POWER_TARGET)) * se``.

    Fewer than two items cannot bound anything: the guard fails and says so.
    """
    from scipy import stats as sps

    d = np.asarray(tuned, dtype=float) - np.asarray(base, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else 0.0
    if margin == 0:
        worst = float(d.min()) if n else 0.0
        return {"bound": worst, "upper": float(d.max()) if n else 0.0, "passes": worst >= 0,
                "test": "no item worse (margin 0): worst item's change", "power": None,
                "min_margin": None}
    if n < 2:
        return {"bound": float("-inf"), "upper": float("inf"), "passes": False,
                "test": f"non-inferiority needs at least 2 items, has {n}", "power": 0.0,
                "min_margin": None}
    se = float(d.std(ddof=1) / np.sqrt(n))
    t = float(sps.t.ppf(1 - alpha, n - 1))
    bound, upper = mean - t * se, mean + t * se
    power = 1.0 if se == 0 else float(sps.norm.cdf(margin / se - t))
    return {"bound": bound, "upper": upper, "passes": bound >= -margin - 1e-12,
            "test": f"non-inferiority, paired t one-sided {1 - alpha:.0%} (n={n}, se={se:.3f})",
            "power": power, "min_margin": (t + float(sps.norm.ppf(POWER_TARGET))) * se}


def chance(base: np.ndarray, chance_rate: float, alpha: float) -> tuple[bool, float]:
    """Whether the base model is at chance on a 0/1 metric: its successes are not significantly
    above what guessing gives (one-sided binomial test against ``chance_rate``; a rate of 0,
    free-text replies, means the base passes no item). Returns (at chance, p)."""
    from scipy.stats import binomtest

    b = np.asarray(base, dtype=float)
    hits, n = int(b.sum()), len(b)
    if chance_rate <= 0:
        return hits == 0, 1.0 if hits == 0 else 0.0
    p = float(binomtest(hits, n, chance_rate, alternative="greater").pvalue) if n else 1.0
    return p >= alpha, p
