"""Couplings: OT pairings are permutations, optimal (exact) or near it (Sinkhorn)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows import COUPLINGS, ExactOT, Independent, Paired, SinkhornOT
from flowstudy.flows.sinkhorn import round_to_permutation, sinkhorn_log_plan


def _two_gaussians(b: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise N(0, I) and data N(2, 0.5^2 I)."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, d, generator=g)
    x1 = 2.0 + 0.5 * torch.randn(b, d, generator=g)
    return x0, x1


def _pair_cost(x0: torch.Tensor, x1: torch.Tensor) -> float:
    return (x0 - x1).square().sum(dim=1).mean().item()


def _row_permutation(x1: torch.Tensor, paired: torch.Tensor) -> list[int]:
    """Index j of the x1 row equal to each paired row; asserts every row is an exact copy."""
    matches = (paired[:, None, :] == x1[None, :, :]).all(dim=2)  # [B, B]
    assert (matches.sum(dim=1) == 1).all(), "every paired row must be an unaltered x1 row"
    return matches.float().argmax(dim=1).tolist()


@pytest.mark.parametrize("coupling", [ExactOT(), SinkhornOT()], ids=repr)
def test_ot_pairing_is_a_permutation_that_lowers_cost(coupling):
    x0, x1 = _two_gaussians(128, 8)
    new_x0, new_x1 = coupling(x0, x1)
    assert torch.equal(new_x0, x0)  # noise order kept
    perm = _row_permutation(x1, new_x1)
    assert sorted(perm) == list(range(128))  # each data row used exactly once
    random_cost, ot_cost = _pair_cost(x0, x1), _pair_cost(new_x0, new_x1)
    # independent pairs: E|x0 - x1|^2 = |mu|^2 + tr(S0 + S1) = 8·(4 + 1 + 0.25) = 42;
    # the OT (W2^2) optimum between the two Gaussians is |mu|^2 + |S0^1/2 - S1^1/2|_F^2 = 8·(4 + 0.25) = 34
    w2_squared = 34.0
    assert random_cost == pytest.approx(42.0, rel=0.1)
    assert w2_squared < ot_cost  # a minibatch cannot beat the population optimum by much; here not at all
    assert random_cost - ot_cost > 0.6 * (random_cost - w2_squared)  # most of the excess cost removed


def test_exact_ot_equals_brute_force_optimum():
    x0, x1 = _two_gaussians(6, 3, seed=1)
    cost = torch.cdist(x0.double(), x1.double()).square()  # [6, 6]
    best = min(sum(cost[i, p[i]].item() for i in range(6)) for p in itertools.permutations(range(6)))
    _, paired = ExactOT()(x0, x1)
    assert _pair_cost(x0.double(), paired.double()) * 6 == pytest.approx(best, rel=1e-12)


def test_sinkhorn_plan_marginals_and_cost():
    x0, x1 = _two_gaussians(64, 4, seed=2)
    coupling = SinkhornOT(reg=0.05, max_iters=500, tol=1e-6)
    plan = coupling.log_plan(x0.double(), x1.double()).exp()  # [64, 64]
    torch.testing.assert_close(plan.sum(dim=0), torch.full((64,), 1 / 64, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(plan.sum(dim=1), torch.full((64,), 1 / 64, dtype=torch.float64), rtol=0, atol=1e-6)
    cost = torch.cdist(x0.double(), x1.double()).square()
    plan_cost = (plan * cost).sum().item()
    exact = _pair_cost(*ExactOT()(x0.double(), x1.double()))
    assert exact <= plan_cost < _pair_cost(x0, x1)  # entropic blur costs extra, still far below random
    _, paired = coupling(x0, x1)
    assert exact <= _pair_cost(x0, paired) < 1.05 * exact  # the rounded permutation is near optimal


def test_sinkhorn_plan_is_the_permutation_when_it_clearly_wins():
    """With eps far below the gap between the best and any other pairing, P -> the OT permutation / B."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(12, 3, generator=g, dtype=torch.float64)
    shuffle = torch.randperm(12, generator=g)
    x1 = x0[shuffle] + 0.01 * torch.randn(12, 3, generator=g, dtype=torch.float64)  # x1_j ~ x0_shuffle[j]
    cost = torch.cdist(x0, x1).square()
    # closest x0 pair: swapping costs ~0.28 = 60·eps, so the blur is ~exp(-60)
    plan = sinkhorn_log_plan(cost, eps=1e-3 * cost.mean().item(), max_iters=200, tol=1e-12).exp()
    expected = torch.zeros(12, 12, dtype=torch.float64)
    expected[shuffle, torch.arange(12)] = 1 / 12  # x0 row shuffle[j] goes to x1 row j
    torch.testing.assert_close(plan, expected, rtol=0, atol=1e-9)
    _, paired = ExactOT()(x0, x1)
    assert torch.equal(paired, x1[plan.argmax(dim=1)])


def test_round_to_permutation_recovers_a_permutation_matrix_and_breaks_ties():
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    score = torch.full((50, 50), -5.0)
    score[torch.arange(50), perm] = 0.0
    assert torch.equal(round_to_permutation(score), perm)
    flat = round_to_permutation(torch.zeros(7, 7))  # all ties: still one-to-one
    assert sorted(flat.tolist()) == list(range(7))


@pytest.mark.parametrize("coupling", [Independent(), Paired()], ids=repr)
def test_identity_couplings(coupling):
    x0, x1 = _two_gaussians(10, 3)
    new_x0, new_x1 = coupling(x0, x1)
    assert torch.equal(new_x0, x0) and torch.equal(new_x1, x1)


def test_mismatched_batches_rejected():
    x0, x1 = _two_gaussians(10, 3)
    with pytest.raises(ValueError, match="one shape"):
        ExactOT()(x0[:9], x1)


def test_sinkhorn_options_validated():
    with pytest.raises(ConfigError, match="reg"):
        SinkhornOT(reg=0.0)
    with pytest.raises(ConfigError, match="max_iters"):
        SinkhornOT(max_iters=0)


def test_registry_names_and_x0_requirement():
    assert set(COUPLINGS) == {"independent", "exact_ot", "sinkhorn", "paired"}
    assert [name for name, cls in COUPLINGS.items() if cls().requires_x0] == ["paired"]
    assert math.isfinite(SinkhornOT().reg)
