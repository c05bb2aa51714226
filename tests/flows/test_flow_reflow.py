"""Reflow pairs from analytic velocity fields."""

from __future__ import annotations

import math

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows import create_flow, generate_reflow_pairs

D = 4
MU = torch.tensor([1.0, -2.0, 0.5, 3.0])


def _constant(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return MU.expand_as(x)


def test_constant_field_pairs_are_shifted_noise():
    x0, x1 = generate_reflow_pairs(_constant, 50, D, steps=3, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert x0.shape == x1.shape == (50, D) and x0.dtype == x1.dtype == torch.float32
    torch.testing.assert_close(x1, x0 + MU, rtol=0, atol=1e-6)
    assert x0.std().item() == pytest.approx(1.0, abs=0.2)  # standard-normal noise
    assert not x1.requires_grad


def test_linear_field_pairs_follow_the_exponential():
    """dx/dt = -x maps x0 to x0·e^-1 (rk4, 32 steps: error ~ 1e-8)."""
    x0, x1 = generate_reflow_pairs(lambda x, t: -x, 20, D, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x1, x0 * math.exp(-1.0), rtol=1e-5, atol=1e-6)


def test_deterministic_under_a_seed():
    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x * t[:, None]

    runs = [generate_reflow_pairs(field, 10, D, generator=torch.Generator().manual_seed(2)) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_reflow_flow_trains_on_the_pairs_unchanged():
    x0, x1 = generate_reflow_pairs(_constant, 32, D, generator=torch.Generator().manual_seed(3))
    sample = create_flow("reflow").sample_path(x1, x0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(sample.x0, x0) and torch.equal(sample.x1, x1)
    torch.testing.assert_close(sample.u_t, MU.expand(32, D), rtol=0, atol=1e-6)  # straight target x1 - x0
    oracle_loss = create_flow("reflow").loss(_constant, x1, x0, generator=torch.Generator().manual_seed(4))
    assert oracle_loss.item() < 1e-12


def test_bad_sizes_rejected():
    with pytest.raises(ConfigError, match="batch_size"):
        generate_reflow_pairs(_constant, 10, D, batch_size=0)
