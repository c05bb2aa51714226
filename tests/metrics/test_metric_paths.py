"""Path metrics on analytic fields: constant (straight), rotation (closed-form curvature),
linear growth (known solution), and an exact round trip."""

from __future__ import annotations

import math

import pytest
import torch

from flowstudy.metrics import error_vs_nfe, reconstruction_error, row_errors, straightness


def _rotation(theta: float):
    """v(x, t) = theta * J x in the first two coordinates: paths are circular arcs."""

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (x.shape[0],)
        v = torch.zeros_like(x)
        v[:, 0], v[:, 1] = -theta * x[:, 1], theta * x[:, 0]
        return v

    return field


def test_constant_field_is_perfectly_straight():
    c = torch.linspace(-1, 1, 5, dtype=torch.float64)
    s = straightness(lambda x, t: c.expand_as(x), torch.randn(10, 5, dtype=torch.float64), steps=20)
    assert s.value < 1e-24 and s.relative < 1e-24 and s.per_sample.shape == (10,)


def test_rotation_straightness_matches_closed_form():
    # x_t = R(theta t) x0: |v| = theta r, |x1 - x0| = 2 r sin(theta / 2), so
    # S = int |v|^2 - 2 v.(x1 - x0) + |x1 - x0|^2 dt = r^2 (theta^2 - 4 sin^2(theta / 2))
    theta = 1.2
    x0 = torch.randn(7, 2, dtype=torch.float64)
    s = straightness(_rotation(theta), x0, method="rk4", steps=200, batch_size=3)
    r2 = (x0**2).sum(1)
    expected = r2 * (theta**2 - 4 * math.sin(theta / 2) ** 2)
    torch.testing.assert_close(s.per_sample, expected, rtol=1e-4, atol=1e-10)
    assert s.value > 0.01


def test_error_vs_nfe_matches_euler_closed_form_on_linear_growth():
    # Euler on dx/dt = a x takes x0 to x0 (1 + a / n)^n in n steps; the truth is x0 e^a
    a = 0.8
    x0 = torch.randn(16, 4, dtype=torch.float64)
    curve = error_vs_nfe(lambda x, t: a * x, x0, steps=(4, 8, 16, 32), reference_steps=128)
    assert curve.nfe == (4, 8, 16, 32) and curve.reference_nfe == 4 * 128
    rms_x0 = float((x0**2).mean().sqrt())
    expected = [rms_x0 * abs((1 + a / n) ** n - math.exp(a)) for n in curve.steps]
    assert curve.rmse == pytest.approx(expected, rel=1e-6)
    ratios = [e0 / e1 for e0, e1 in zip(curve.rmse[:-1], curve.rmse[1:])]
    assert all(1.8 < r < 2.2 for r in ratios)  # first order: halving h halves the error
    same = error_vs_nfe(lambda x, t: a * x, x0, steps=(128,), method="rk4", reference_steps=128)
    assert same.rmse[0] == 0.0  # the reference itself


def test_reconstruction_round_trip_is_exact_for_an_invertible_field():
    theta = 0.9
    x1 = torch.randn(12, 3, dtype=torch.float64)
    rec = reconstruction_error(_rotation(theta), x1, method="rk4", steps=100)
    assert rec.mean_mse < 1e-18 and rec.mean_cosine == pytest.approx(1.0, abs=1e-12)
    # the noise end is R(-theta) x1 in the rotated plane, untouched in the third coordinate
    c, s = math.cos(theta), math.sin(theta)
    expected = torch.stack([c * x1[:, 0] + s * x1[:, 1], -s * x1[:, 0] + c * x1[:, 1], x1[:, 2]], dim=1)
    torch.testing.assert_close(rec.noise, expected, rtol=1e-9, atol=1e-9)
    assert rec.nfe == 2 * 4 * 100 and rec.mse.shape == (12,)


def test_row_errors_by_hand():
    x = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    mse, cos = row_errors(x, torch.tensor([[0.0, 1.0], [6.0, 8.0]]))
    torch.testing.assert_close(mse, torch.tensor([1.0, 12.5], dtype=torch.float64))
    torch.testing.assert_close(cos, torch.tensor([0.0, 1.0], dtype=torch.float64))
