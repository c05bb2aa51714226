"""Gaussian base field: Ledoit–Wolf against its definition, the velocity against the Gaussian
conditional expectation in float64, its flow against the fitted covariance, and runs that use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudy.flows.gaussian_base import GaussianBaseField, ledoit_wolf
from flowstudy.flows.paths import LinearInterpolant, Straight, TrigInterpolant
from flowstudy.solvers import solve


def _lw_reference(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit & Wolf (2004), Lemma 3.2 / Theorem 3.1, written term by term (norms scaled by 1/D)."""
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    m = np.trace(s) / d
    d2 = np.sum((s - m * np.eye(d)) ** 2) / d
    b2_bar = sum(np.sum((np.outer(r, r) - s) ** 2) / d for r in xc) / n**2
    b2 = min(b2_bar, d2)
    rho = b2 / d2
    return rho * m * np.eye(d) + (1 - rho) * s, rho


@pytest.mark.parametrize("n, d", [(30, 12), (12, 30)])
def test_ledoit_wolf_matches_its_definition(n, d):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)) @ np.diag(np.linspace(0.2, 3.0, d)) + 1.5
    cov, rho = ledoit_wolf(torch.from_numpy(x))
    ref, ref_rho = _lw_reference(x)
    assert rho == pytest.approx(ref_rho, rel=1e-10)
    np.testing.assert_allclose(cov.numpy(), ref, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(cov).min() > 0  # well conditioned even with n < d


def test_ledoit_wolf_shrinks_little_with_many_rows_and_much_with_few():
    g = torch.Generator().manual_seed(0)
    scales = torch.linspace(0.1, 3.0, 8)
    _, rho_many = ledoit_wolf(torch.randn(20_000, 8, generator=g) * scales)
    _, rho_few = ledoit_wolf(torch.randn(20, 400, generator=g))  # isotropic truth: shrink hard
    assert rho_many < 0.01 and rho_few > 0.8
    with pytest.raises(ValueError, match="N >= 2"):
        ledoit_wolf(torch.randn(1, 4))


PATHS = [Straight(), LinearInterpolant(gamma=0.7), TrigInterpolant(), TrigInterpolant(gamma=0.4)]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: repr(p))
def test_base_velocity_is_the_gaussian_conditional_expectation(path):
    """E[u_t | x_t] = a'mu + Cov(u_t, x_t) Cov(x_t)^-1 (x - a mu), by dense float64 algebra."""
    torch.manual_seed(0)
    d = 6
    a_mat = torch.randn(d, d, dtype=torch.float64)
    cov = a_mat @ a_mat.T + 0.3 * torch.eye(d, dtype=torch.float64)
    mean = torch.randn(d, dtype=torch.float64)
    lam, vec = torch.linalg.eigh(cov)
    base = GaussianBaseField(path, mean, vec, lam)
    x = torch.randn(5, d, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    for t in (0.0, 0.13, 0.5, 0.91, 1.0):
        c = path.coefficients(torch.tensor(t, dtype=torch.float64))
        cov_x = c.alpha**2 * cov + (c.beta**2 + c.gamma**2) * eye
        cov_ux = c.d_alpha * c.alpha * cov + (c.d_beta * c.beta + c.d_gamma * c.gamma) * eye
        expected = c.d_alpha * mean + (x - c.alpha * mean) @ torch.linalg.solve(cov_x, cov_ux.T)
        got = base(x.float(), torch.full((5,), t))
        torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)


def test_base_flow_carries_noise_to_the_fitted_gaussian():
    """The base field alone is linear, x(1) = M x(0) + c; integrating it gives M M^T = cov, c = mean."""
    torch.manual_seed(1)
    d = 8
    a_mat = torch.randn(d, d, dtype=torch.float64)
    cov = a_mat @ a_mat.T / d + 0.2 * torch.eye(d, dtype=torch.float64)
    mean = torch.randn(d, dtype=torch.float64)
    lam, vec = torch.linalg.eigh(cov)
    base = GaussianBaseField(Straight(), mean, vec, lam)
    starts = torch.cat([torch.zeros(1, d), torch.eye(d)])  # [1 + d, D]: the offset, then columns
    end = solve(base, starts, 0.0, 1.0, method="rk4", steps=200).x.double()
    offset, m = end[0], (end[1:] - end[0]).T
    torch.testing.assert_close(offset, mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(m @ m.T, cov, rtol=1e-3, atol=1e-3)


def test_fit_uses_shrunk_covariance_and_rejects_singular_input():
    x = torch.randn(10, 40, generator=torch.Generator().manual_seed(0))
    base = GaussianBaseField.fit(x, Straight())
    assert base.eigvals.min() > 0 and 0 < base.shrinkage <= 1
    torch.testing.assert_close(base.mean, x.mean(0))
    with pytest.raises(ValueError, match="positive definite"):
        GaussianBaseField(Straight(), torch.zeros(3), torch.eye(3), torch.tensor([1.0, 0.0, 2.0]))
