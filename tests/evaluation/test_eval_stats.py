"""The gate's statistics against statsmodels/scipy on known inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tunebook.evaluation import stats as gate_stats


def pairs_from_table(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-item (base, tuned) correctness realising a 2x2 table [[11, 10], [01, 00]]."""
    (both, base_only), (tuned_only, neither) = table
    base = [1] * both + [1] * base_only + [0] * tuned_only + [0] * neither
    tuned = [1] * both + [0] * base_only + [1] * tuned_only + [0] * neither
    return np.array(base), np.array(tuned)


def test_mcnemar_known_value():
    # a published worked example: [[300, 18], [40, 142]] -> exact p = 0.0054
    base, tuned = pairs_from_table([[300, 18], [40, 142]])
    table, p = gate_stats.mcnemar_exact(base, tuned)
    assert table == [[300, 18], [40, 142]]
    assert p == pytest.approx(0.0054, abs=5e-5)
    # the exact McNemar test is a two-sided binomial test on the discordant pairs
    assert p == pytest.approx(stats.binomtest(18, 58, 0.5).pvalue, rel=1e-9)


def test_mcnemar_small_and_degenerate():
    base, tuned = pairs_from_table([[0, 0], [6, 10]])
    _, p = gate_stats.mcnemar_exact(base, tuned)
    assert p == pytest.approx(2 * 0.5 ** 6)  # b=0, c=6: 0.03125, by hand
    base, tuned = pairs_from_table([[5, 0], [0, 5]])
    assert gate_stats.mcnemar_exact(base, tuned) == ([[5, 0], [0, 5]], 1.0)


def test_paired_bootstrap_matches_scipy():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 200)
    tuned = np.clip(base + rng.normal(0.05, 0.1, 200), 0, 1)
    ours = gate_stats.paired_bootstrap_ci(base, tuned, confidence=0.95, n_resamples=20_000, seed=1)
    ref = stats.bootstrap((base, tuned), lambda b, t, axis: np.mean(t - b, axis=axis),
                          paired=True, vectorized=True, n_resamples=20_000, method="percentile",
                          confidence_level=0.95, random_state=np.random.default_rng(2))
    # different random streams: the two percentile intervals agree to Monte Carlo error
    assert ours[0] == pytest.approx(ref.confidence_interval.low, abs=2.5e-3)
    assert ours[1] == pytest.approx(ref.confidence_interval.high, abs=2.5e-3)
    # and both bracket the observed mean difference
    assert ours[0] < np.mean(tuned - base) < ours[1]


def test_bootstrap_is_seeded_and_paired():
    base = np.array([0.1, 0.5, 0.9, 0.3])
    a = gate_stats.bootstrap_deltas(base, base + 0.2, n_resamples=500, seed=7)
    b = gate_stats.bootstrap_deltas(base, base + 0.2, n_resamples=500, seed=7)
    assert np.array_equal(a, b)
    # pairing: a constant per-item shift has no resampling variance at all
    assert np.allclose(a, 0.2)
    assert gate_stats.paired_bootstrap_ci(base, base + 0.2) == pytest.approx((0.2, 0.2))


def test_is_binary():
    assert gate_stats.is_binary(np.array([0, 1, 1.0]), np.array([1, 0, 0]))
    assert not gate_stats.is_binary(np.array([0, 0.5]), np.array([1, 0]))


def test_non_inferiority_bound_by_hand():
    # d = tuned - base = [+1, 0, 0, -1, 0, +1, 0, 0]: mean 1/8, sd^2 = (2 * (7/8)^2 + 5 * (1/8)^2
    # + (9/8)^2) / 7 = 0.4107; se = sqrt(0.4107 / 8); bound = mean - t(0.95, 7) * se
    base = np.array([0, 1, 1, 1, 0, 0, 1, 0], dtype=float)
    tuned = np.array([1, 1, 1, 0, 0, 1, 1, 0], dtype=float)
    se = np.sqrt((2 * (7 / 8) ** 2 + 4 * (1 / 8) ** 2 + (9 / 8) ** 2 + (1 / 8) ** 2) / 7 / 8)
    out = gate_stats.non_inferiority(base, tuned, margin=0.35, alpha=0.05)
    assert out["bound"] == pytest.approx(1 / 8 - stats.t.ppf(0.95, 7) * se)  # = -0.304
    assert out["passes"] and out["bound"] > -0.35
    assert not gate_stats.non_inferiority(base, tuned, margin=0.3, alpha=0.05)["passes"]
    # power when nothing changed: Phi(margin / se - t); smallest margin at 80%: (t + z.8) se
    assert out["power"] == pytest.approx(stats.norm.cdf(0.35 / se - stats.t.ppf(0.95, 7)))
    assert out["min_margin"] == pytest.approx((stats.t.ppf(0.95, 7) + stats.norm.ppf(0.8)) * se)


def test_non_inferiority_margin_zero_is_no_item_worse():
    base = np.array([1, 0, 0, 1], dtype=float)
    assert gate_stats.non_inferiority(base, np.array([1, 1, 1, 1.]), 0.0, 0.05)["passes"]
    worse = gate_stats.non_inferiority(base, np.array([1, 1, 1, 0.]), 0.0, 0.05)
    assert not worse["passes"] and worse["bound"] == -1.0  # one item flipped, however many gain


def test_non_inferiority_needs_two_items_and_identical_scores_bound_exactly():
    one = gate_stats.non_inferiority(np.array([1.0]), np.array([1.0]), 0.05, 0.05)
    assert not one["passes"] and "at least 2 items" in one["test"]
    same = gate_stats.non_inferiority(np.ones(10), np.ones(10), 0.05, 0.05)
    assert same["bound"] == 0.0 and same["passes"] and same["power"] == 1.0


def test_chance_level_by_hand():
    # 10 of 40 on four choices is exactly guessing: binomial P(X >= 10 | n=40, p=.25) = 0.56
    at_chance, p = gate_stats.chance(np.array([1.0] * 10 + [0.0] * 30), 0.25, 0.05)
    assert at_chance and p == pytest.approx(stats.binomtest(10, 40, 0.25,
                                                            alternative="greater").pvalue)
    assert not gate_stats.chance(np.array([1.0] * 25 + [0.0] * 15), 0.25, 0.05)[0]
    assert gate_stats.chance(np.zeros(20), 0.0, 0.05) == (True, 1.0)  # free text, never passes
    assert not gate_stats.chance(np.array([1.0] + [0.0] * 19), 0.0, 0.05)[0]
