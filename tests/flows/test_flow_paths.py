"""Interpolant paths against their closed forms (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows import PATHS, LinearInterpolant, Straight, TrigInterpolant

B, D = 16, 5


def _batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x0, x1, z = (torch.randn(B, D, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.rand(B, generator=g, dtype=torch.float64)
    return x0, x1, z, t


def _closed_form(path, x0, x1, z, t):
    """x_t and u_t written out per path, independently of the implementation."""
    t_ = t[:, None]
    pi = math.pi
    if isinstance(path, Straight):
        return (1 - t_) * x0 + t_ * x1 + path.sigma * z, x1 - x0
    g = path.gamma
    gamma, d_gamma = g * t_ * (1 - t_), g * (1 - 2 * t_)
    if isinstance(path, LinearInterpolant):
        return t_ * x1 + (1 - t_) * x0 + gamma * z, x1 - x0 + d_gamma * z
    a, b = torch.sin(pi * t_ / 2), torch.cos(pi * t_ / 2)
    da, db = pi / 2 * torch.cos(pi * t_ / 2), -pi / 2 * torch.sin(pi * t_ / 2)
    return a * x1 + b * x0 + gamma * z, da * x1 + db * x0 + d_gamma * z


PATH_CASES = [
    Straight(),
    Straight(sigma=0.3),
    LinearInterpolant(),
    LinearInterpolant(gamma=0.7),
    TrigInterpolant(),
    TrigInterpolant(gamma=0.7),
]


@pytest.mark.parametrize("path", PATH_CASES, ids=repr)
def test_matches_closed_form(path):
    x0, x1, z, t = _batch()
    x_t, u_t = path.interpolate(x0, x1, t, z)
    want_x, want_u = _closed_form(path, x0, x1, z, t)
    torch.testing.assert_close(x_t, want_x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(u_t, want_u, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", PATH_CASES, ids=repr)
def test_target_is_time_derivative(path):
    """u_t = d/dt x_t at fixed (x0, x1, z): central finite difference, error O(h^2)."""
    x0, x1, z, t = _batch(1)
    t = t.clamp(0.01, 0.99)
    h = 1e-5
    x_plus, _ = path.interpolate(x0, x1, t + h, z)
    x_minus, _ = path.interpolate(x0, x1, t - h, z)
    _, u_t = path.interpolate(x0, x1, t, z)
    torch.testing.assert_close(u_t, (x_plus - x_minus) / (2 * h), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("path", [p for p in PATH_CASES if not (isinstance(p, Straight) and p.sigma > 0)], ids=repr)
def test_endpoints(path):
    """x_0 = x0 and x_1 = x1 exactly up to round-off (gamma vanishes at both ends)."""
    x0, x1, z, _ = _batch(2)
    x_start, _ = path.interpolate(x0, x1, torch.zeros(B, dtype=torch.float64), z)
    x_end, _ = path.interpolate(x0, x1, torch.ones(B, dtype=torch.float64), z)
    torch.testing.assert_close(x_start, x0, rtol=0, atol=1e-15)
    torch.testing.assert_close(x_end, x1, rtol=0, atol=1e-15)


def test_noise_needed_only_with_gamma():
    x0, x1, _, t = _batch()
    assert not LinearInterpolant().needs_noise and not Straight().needs_noise
    x_t, _ = Straight().interpolate(x0, x1, t)  # z not needed
    assert x_t.shape == (B, D)
    with pytest.raises(ValueError, match="pass z"):
        TrigInterpolant(gamma=0.1).interpolate(x0, x1, t)


@pytest.mark.parametrize(
    ("path", "weight"),
    [
        (Straight(), 1.0),
        (Straight(sigma=0.5), 1.0),
        (LinearInterpolant(), 1.0),
        (LinearInterpolant(gamma=0.5), 2 / (2 + 0.25 / 3)),
        (TrigInterpolant(), 8 / math.pi**2),
        (TrigInterpolant(gamma=0.5), 2 / (math.pi**2 / 4 + 0.25 / 3)),
    ],
    ids=repr,
)
def test_loss_weight_closed_form(path, weight):
    assert path.loss_weight == pytest.approx(weight, rel=1e-12)


@pytest.mark.parametrize("path", PATH_CASES, ids=repr)
def test_loss_weight_equalises_target_scale(path):
    """loss_weight · E|u_t|^2 / D = 2 (the straight path's) for standard x0, x1, z and t ~ U[0, 1]."""
    g = torch.Generator().manual_seed(3)
    n, d = 200_000, 4
    x0, x1, z = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.rand(n, generator=g, dtype=torch.float64)
    _, u_t = path.interpolate(x0, x1, t, z)
    scaled = path.loss_weight * u_t.square().mean(dim=1)  # [n]
    tolerance = 5 * scaled.std().item() / math.sqrt(n)
    assert scaled.mean().item() == pytest.approx(2.0, abs=tolerance)


@pytest.mark.parametrize(
    ("cls", "key"), [(Straight, "sigma"), (LinearInterpolant, "gamma"), (TrigInterpolant, "gamma")]
)
def test_negative_noise_rejected(cls, key):
    with pytest.raises(ConfigError, match=key):
        cls(**{key: -0.1})


def test_registry_names():
    assert set(PATHS) == {"straight", "linear", "trig"}
