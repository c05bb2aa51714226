"""Density/coverage on a hand example and on known distributions; Fréchet distance against
closed forms; moment errors on exact transformations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from flowstudy.metrics import density_coverage, frechet_distance, frechet_from_moments, moment_errors, norm_ratio


def test_density_coverage_hand_example():
    real = np.array([[0.0], [1.0], [2.0], [4.0]])  # k=1 radii: 1, 1, 1, 2
    fake = np.array([[0.5], [4.5], [10.0]])  # in balls of {0, 1}, {4}, none
    res = density_coverage(fake, real, k=1)
    assert res.density == pytest.approx(3 / 3)  # (2 + 1 + 0) / (k M)
    assert res.coverage == pytest.approx(3 / 4)  # real 2 has no sample within radius 1


def test_density_coverage_same_distribution_and_collapse():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((400, 64)), rng.standard_normal((400, 64))
    res = density_coverage(fake, real, k=5)
    assert abs(res.density - 1.0) < 0.15
    assert abs(res.coverage - (1 - 2**-5)) < 0.03  # E[coverage] -> 1 - 2^-k for M = N
    modes = real[rng.choice(400, 5, replace=False)]
    collapsed = np.repeat(modes, 80, axis=0) + 0.05 * rng.standard_normal((400, 64))
    assert density_coverage(collapsed, real, k=5).coverage < 0.2


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_from_moments_closed_forms():
    mu = np.array([1.0, -2.0, 0.5])
    assert frechet_from_moments(np.zeros(3), np.eye(3), mu, np.eye(3)) == pytest.approx(5.25, abs=1e-12)
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = float(mu @ mu + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum())  # 5.25 + 1 + 1
    assert frechet_from_moments(np.zeros(3), np.diag(s1), mu, np.diag(s2)) == pytest.approx(expected, abs=1e-12)
    rng = np.random.default_rng(1)
    c1, c2 = _random_spd(rng, 12), _random_spd(rng, 12)
    ref = np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert frechet_from_moments(np.zeros(12), c1, np.zeros(12), c2) == pytest.approx(ref, rel=1e-9)


def test_frechet_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    n, d = 100_000, 6  # sampling error of the mean term ~ 2 sqrt(2 mu'mu / n) = 0.011
    mu = np.full(d, 0.5)
    sd = np.array([0.5, 1.0, 1.5, 2.0, 1.0, 0.8])
    a = rng.standard_normal((n, d))
    shifted = frechet_distance(a, rng.standard_normal((n, d)) + mu)
    assert shifted.value == pytest.approx(float(mu @ mu), abs=0.04)
    scaled = frechet_distance(a, rng.standard_normal((n, d)) * sd)
    assert scaled.value == pytest.approx(float(((sd - 1.0) ** 2).sum()), abs=0.04)
    assert scaled.n_a == scaled.n_b == n and scaled.dim == d


def test_frechet_bias_is_stated_and_visible_at_small_n():
    rng = np.random.default_rng(3)
    small = frechet_distance(rng.standard_normal((50, 128)), rng.standard_normal((50, 128)))
    assert small.value > 50  # true FD is 0: N < D fits are dominated by estimation error
    assert "equal n_a and n_b" in small.note and small.n_a == 50
    assert small.mean_term_bias == pytest.approx(2 * 128 / 50, rel=0.1)
    same = frechet_distance(torch.randn(30, 64), torch.randn(30, 64))
    assert same.trace_term >= -1e-8


def test_frechet_of_a_set_with_itself_is_zero_even_when_rank_deficient():
    x = np.random.default_rng(4).standard_normal((20, 50))
    assert abs(frechet_distance(x, x).value) < 1e-10


def test_moment_errors_on_exact_transformations():
    rng = np.random.default_rng(5)
    real = rng.standard_normal((200, 16)) + 1.0
    doubled = moment_errors(2 * real, real)
    assert doubled.norm_ratio == pytest.approx(2.0) == norm_ratio(2 * real, real)
    assert norm_ratio(real[:50] * 0.5, real[:50]) == pytest.approx(0.5)
    assert doubled.std_error == pytest.approx(1.0)  # (2 sd - sd) / sd in every dimension
    assert doubled.mean_error == pytest.approx(np.sqrt((real.mean(0) ** 2).mean()))
    c = np.linspace(-1, 1, 16)
    moved = moment_errors(real + c, real)
    assert moved.mean_error == pytest.approx(np.sqrt((c**2).mean())) and moved.std_error == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("n_a, n_b, dim", [(15, 25, 40), (90, 60, 8)])  # sample-space and covariance paths
def test_frechet_from_samples_equals_the_moment_formula_on_fitted_moments(n_a, n_b, dim):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((n_a, dim)), 0.5 + rng.standard_normal((n_b, dim)) @ rng.standard_normal((dim, dim))
    res = frechet_distance(a, b)
    ref = frechet_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert res.value == pytest.approx(ref, rel=1e-9)
    assert res.mean_term + res.trace_term == pytest.approx(res.value)
