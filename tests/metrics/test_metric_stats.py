"""Intervals cover at their nominal rate; tests and corrections match hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from flowstudy.metrics import bootstrap_ci, holm, mean_ci, paired_test


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(200):
        lo, hi = bootstrap_ci(rng.normal(3.0, 2.0, size=50), seed=rep)
        hits += lo <= 3.0 <= hi
    assert 0.90 <= hits / 200 <= 0.99


def test_bootstrap_accepts_statistics_without_axis():
    v = np.random.default_rng(1).exponential(size=30)
    assert bootstrap_ci(v, lambda r: float(np.median(r)), seed=4) == bootstrap_ci(v, np.median, seed=4)


def test_mean_ci_by_hand_and_coverage():
    ci = mean_ci([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * np.std([1, 2, 3, 4], ddof=1) / 2  # t_{0.975, 3}
    assert (ci.mean, ci.lo, ci.hi, ci.n) == pytest.approx((2.5, 2.5 - half, 2.5 + half, 4))
    assert np.isnan(mean_ci([5.0]).lo)
    rng = np.random.default_rng(2)
    cover = np.mean([(c.lo <= 0 <= c.hi) for c in (mean_ci(rng.standard_normal(5)) for _ in range(1000))])
    assert 0.93 <= cover <= 0.97


def test_paired_test_picks_t_for_few_pairs_and_wilcoxon_for_more():
    a, b = np.array([1.0, 2.0, 4.0, 3.0]), np.array([0.5, 1.0, 3.0, 3.0])
    res = paired_test(a, b)
    d = a - b
    assert res.test == "paired_t" and res.statistic == pytest.approx(d.mean() / (d.std(ddof=1) / 2))
    more = paired_test(np.arange(8.0) + 1.0, np.arange(8.0))  # all 8 differences positive
    assert more.test == "wilcoxon" and more.pvalue == pytest.approx(2 / 2**8)
    assert paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).pvalue == 1.0


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, 1*0.04 = .02, .03, .06, .04 -> running max
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
