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
