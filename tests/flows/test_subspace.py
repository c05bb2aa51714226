"""The subspace residual: outside the top-k principal subspace the flow is the exact Gaussian flow,
its likelihood factorises, its structured divergence is the Jacobian trace, and runs keep it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows.gaussian_base import GaussianBaseField
from flowstudy.flows.paths import Straight
from flowstudy.flows.subspace import SubspaceNet, SubspaceResidual, compose_field
from flowstudy.flows.divergence import divergence_exact
from flowstudy.metrics.likelihood import gaussian_fit, gaussian_log_prob, heldout_nll, ode_log_prob
from flowstudy.models import create_model
from flowstudy.solvers import solve

pytestmark = pytest.mark.usefixtures("one_thread")

D, K = 12, 3


def _rows(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(D, D, generator=g, dtype=torch.float64) * torch.linspace(2.0, 0.2, D, dtype=torch.float64)
    return torch.randn(n, D, generator=g, dtype=torch.float64) @ mix.T + 0.3


def _field(reads: str = "subspace", trained: bool = True, scale: float = 1.0) -> SubspaceResidual:
    """Base field of 300 rows plus an MLP residual in the top K directions; ``trained``: random
    weights (the output layer is zero-initialised, so an untrained network adds nothing)."""
    torch.manual_seed(0)
    base = GaussianBaseField.fit(_rows(300), Straight())
    net = create_model("mlp-tiny", input_dim=K if reads == "subspace" else D)
    if trained:
        for p in net.parameters():
            p.data.normal_(0.0, 0.15)
    return SubspaceResidual.around(net, base, K, reads=reads, scale=scale).eval()


def _gaussian_log_prob(field: SubspaceResidual, x: torch.Tensor) -> torch.Tensor:
    base = field.base
    return gaussian_log_prob(x, base.mean, base.eigvecs, base.eigvals)


def _complement(field: SubspaceResidual, x: torch.Tensor) -> torch.Tensor:
    """Coordinates of x [B, D] along the D - K directions outside the subspace: [B, D - K]."""
    order = torch.argsort(field.base.eigvals, descending=True)[K:]
    return x.float() @ field.base.eigvecs[:, order]


def test_zero_network_has_the_gaussian_closed_form():
    field = _field(trained=False)
    x = _rows(16, seed=1).float()
    log_p, _ = ode_log_prob(field, x.double(), estimator="exact", steps=40, exact_divergence=field.divergence)
    np.testing.assert_allclose(log_p[0].numpy(), _gaussian_log_prob(field, x).numpy(), rtol=1e-5, atol=1e-4)
    # alpha = 0 is the Gaussian fit whatever the network's weights
    zero = _field(trained=True, scale=0.0)
    log_p0, _ = ode_log_prob(zero, x.double(), estimator="exact", steps=40, exact_divergence=zero.divergence)
    np.testing.assert_allclose(log_p0[0].numpy(), _gaussian_log_prob(zero, x).numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("reads", ["subspace", "full"])
def test_complement_follows_the_gaussian_flow_exactly(reads):
    field = _field(reads)
    noise = torch.randn(64, D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        end = solve(field, noise, 0.0, 1.0, method="rk4", steps=30).x
        gauss = solve(field.base, noise, 0.0, 1.0, method="rk4", steps=30).x
    assert (end - gauss).abs().max() > 0.1  # the network moves the samples ...
    torch.testing.assert_close(_complement(field, end), _complement(field, gauss), atol=1e-5, rtol=1e-5)  # ... only inside


def test_likelihood_factorises_into_the_complements_gaussian_and_the_subspace_flow():
    """reads = "subspace": log p(x) - log N_perp(x) depends on the subspace coordinates only."""
    field = _field("subspace")
    x = _rows(8, seed=2)
    order = torch.argsort(field.base.eigvals, descending=True)
    perp = field.base.eigvecs[:, order[K:]].double()  # [D, D - K]
    moved = x + torch.randn(8, D - K, generator=torch.Generator().manual_seed(4), dtype=torch.float64) @ perp.T

    def excess(rows: torch.Tensor) -> torch.Tensor:
        log_p, _ = ode_log_prob(field, rows, estimator="exact", steps=40, exact_divergence=field.divergence)
        lam = field.base.eigvals[order[K:]].double()
        y = (rows - field.base.mean.double()) @ perp  # complement coordinates
        log_perp = -0.5 * ((y.square() / lam).sum(1) + lam.log().sum() + (D - K) * math.log(2 * math.pi))
        return log_p[0] - log_perp

    assert (excess(x) - _gaussian_log_prob(field, x)).abs().max() > 0.01  # not the Gaussian any more
    torch.testing.assert_close(excess(moved), excess(x), atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("reads", ["subspace", "full"])
def test_structured_divergence_is_the_jacobian_trace(reads):
    field = _field(reads, scale=0.7)
    x, t = _rows(10, seed=5).float(), torch.rand(10, generator=torch.Generator().manual_seed(6))
    v, div = field.divergence(x, t)
    v_ref, div_ref = divergence_exact(field, x, t)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(div, div_ref, atol=1e-4, rtol=1e-4)


class _Squashed(torch.nn.Module):
    def __init__(self, net, squash):
        super().__init__()
        self.net, self.squash = net, squash

    def forward(self, x, t):
        return self.squash(self.net(x, t))


def test_structured_divergence_falls_back_to_autograd_where_torch_func_refuses(old_style_tanh):
    fields = {}
    for old_style in (False, True):
        plain = _field(scale=0.7)
        squashed = _Squashed(plain.net.net, old_style_tanh if old_style else torch.tanh)
        fields[old_style] = SubspaceResidual(SubspaceNet(squashed, plain.net.basis, plain.net.lam, scale=0.7), plain.base).eval()
    x, t = _rows(10, seed=5).float(), torch.rand(10, generator=torch.Generator().manual_seed(6))
    with pytest.raises(RuntimeError, match="autograd.Function"):
        fields[True].divergence(x, t)
    v, div = fields[True].divergence(x, t, functional=False)
    v_ref, div_ref = divergence_exact(fields[False], x, t)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(div, div_ref, atol=1e-4, rtol=1e-4)
    # the likelihood's ODE switches to plain autograd by itself and gets the same log-density
    log_p = {k: ode_log_prob(f, x, estimator="exact", steps=8, exact_divergence=f.divergence)[0] for k, f in fields.items()}
    torch.testing.assert_close(log_p[True], log_p[False], atol=1e-4, rtol=1e-5)


def test_eigenbasis_complement_is_the_exact_gaussian_flow_map():
    from flowstudy.flows.subspace import EigenbasisFlow

    field = _field(scale=0.7)
    flow = EigenbasisFlow(field)
    lam, mean = field.base.eigvals.sort(descending=True).values[K:], flow.base.mean[K:]
    # rk4 with 50 steps: the straight-path Gaussian flow maps w0 to m + sqrt(lam) w0 per direction
    p, q = flow.complement_map("rk4", 50)
    torch.testing.assert_close(p, lam.sqrt(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q, mean, atol=1e-5, rtol=1e-5)
    # any fixed-step solve of the complement is the affine map P w0 + Q, row by row
    w0 = torch.randn(7, D - K, generator=torch.Generator().manual_seed(3))
    p, q = flow.complement_map("euler", 4)
    torch.testing.assert_close(solve(flow.complement_velocity, w0, 0.0, 1.0, method="euler", steps=4).x, w0 * p + q, atol=1e-6, rtol=1e-6)
    assert (p - lam.sqrt()).abs().max() > 1e-3  # 4 Euler steps are not the exact map


def test_eigenbasis_forms_are_the_rotated_fields():
    """DiagonalGaussianBase and EigenSubspaceNet at w = Rᵀx are Rᵀ times the data-space fields."""
    field = _field(scale=0.7)
    base, net = field.base.in_eigenbasis(), field.net.in_eigenbasis()
    rotation = base.eigvecs
    lam = field.base.eigvals.sort(descending=True).values
    torch.testing.assert_close(rotation.T @ rotation, torch.eye(D), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotation.T @ field.base.eigvecs @ torch.diag(field.base.eigvals) @ field.base.eigvecs.T @ rotation, torch.diag(lam), atol=1e-4, rtol=1e-4)
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(9, D, generator=g) * 2, torch.rand(9, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(base(x @ rotation, t), field.base(x, t) @ rotation, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net(x @ rotation, t), field.net(x, t) @ rotation, atol=1e-5, rtol=1e-5)
        assert net(x @ rotation, t)[:, K:].abs().max() == 0 and net(x @ rotation, t).abs().max() > 1e-2
    assert list(dict(net.named_parameters())) == list(dict(field.net.named_parameters()))  # stacked groups stack either
    assert next(net.parameters()) is next(field.net.parameters())  # training one trains the other
    with pytest.raises(ValueError, match="subspace coordinates"):
        _field(reads="full").net.in_eigenbasis()


@pytest.mark.parametrize("flow_name", ["icfm", "otcfm"])
def test_eigenbasis_step_has_the_data_space_loss_and_gradients(flow_name):
    """The trainer's eigen-coordinate step (Trainer._step_space) on rotated rows and noise: the
    data-space step's loss and parameter gradients, OT pairing (by distances) included. (Noise
    drawn inside the loss, x0 or an interpolant's z, is N(0, I) in either coordinates.)"""
    from flowstudy.flows import create_flow
    from flowstudy.flows.gaussian_base import WithBaseField

    field = _field(scale=0.7).train()
    eigen = WithBaseField(field.net.in_eigenbasis(), field.base.in_eigenbasis())
    rotation = eigen.base.eigvecs
    flow = create_flow(flow_name)
    x1, x0 = _rows(64, seed=3).float(), torch.randn(64, D, generator=torch.Generator().manual_seed(11))
    losses, grads = [], []
    for model, rows, noise in ((field, x1, x0), (eigen, x1 @ rotation, x0 @ rotation)):
        field.net.zero_grad()
        loss = flow.loss(model, rows, noise, generator=torch.Generator().manual_seed(7))
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in field.net.parameters()])
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=1e-5)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert max(float(g.abs().max()) for g in grads[0]) > 1e-3


def test_heldout_nll_uses_the_exact_structured_divergence():
    from types import SimpleNamespace

    from flowstudy.data import Standardizer

    field = _field(trained=False)
    train = _rows(300)
    std = Standardizer(torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64), 0.1, torch.ones(D, dtype=torch.float64))
    res = heldout_nll(SimpleNamespace(model=field, standardizer=std), _rows(40, seed=7).numpy(), train.numpy(), steps=40)
    assert res.estimator == "exact" and res.model.std_error == 0.0
    assert abs(res.gap_to_gaussian) < 1e-5  # the base is the full fit of the same training rows
    assert gaussian_fit(train)[3] == pytest.approx(field.base.shrinkage)


def test_bad_settings_are_named():
    base = GaussianBaseField.fit(_rows(50), Straight())
    net = create_model("mlp-tiny", input_dim=K)
    with pytest.raises(ConfigError, match="residual_rank must be an integer >= 1; got 0"):
        SubspaceResidual.around(net, base, 0)
    whole = SubspaceNet.around(create_model("mlp-tiny", input_dim=D), base, 4 * D)  # rank >= D: the whole space
    assert whole.rank == D and torch.allclose(whole.basis.T @ whole.basis, torch.eye(D), atol=1e-5)
    with pytest.raises(ConfigError, match="residual_input must be one of subspace, full"):
        SubspaceResidual.around(net, base, K, reads="sub")
    with pytest.raises(ConfigError, match="needs the Gaussian base field"):
        compose_field(SubspaceNet.around(net, base, K), None)


def test_factorised_heldout_nll_equals_the_whole_state_integration():
    from types import SimpleNamespace

    from flowstudy.data import Standardizer

    field = _field(scale=0.7)  # random weights: not the Gaussian fit
    std = Standardizer(torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64), 0.1, torch.ones(D, dtype=torch.float64))
    run, heldout, train = SimpleNamespace(model=field, standardizer=std), _rows(40, seed=7).numpy(), _rows(300).numpy()
    fast = heldout_nll(run, heldout, train, steps=40)
    whole = heldout_nll(run, heldout, train, steps=40, factorised=False)
    assert fast.estimator == whole.estimator == "exact"
    assert abs(fast.gap_to_gaussian) > 1e-3  # the residual moves the likelihood
    assert fast.model.nats_per_dim == pytest.approx(whole.model.nats_per_dim, abs=2e-6)
    assert fast.gap_to_gaussian == pytest.approx(whole.gap_to_gaussian, abs=2e-6)


def _run_and_rows():
    from types import SimpleNamespace

    from flowstudy.data import Standardizer

    field = _field(scale=0.7)
    std = Standardizer(torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64), 0.1, torch.ones(D, dtype=torch.float64))
    return SimpleNamespace(model=field, standardizer=std), _rows(45, seed=7).numpy(), _rows(300).numpy()


@pytest.mark.parametrize("factorised", [True, False], ids=["factorised", "whole"])
def test_graph_heldout_nll_off_the_gpu_solves_as_without(factorised, monkeypatch):
    """graph=True goes through GraphSolves (one solver per batch shape: 20, 20 and a ragged 5
    rows) and, with no CUDA graph to record on the CPU, gives the plain solves' numbers exactly."""
    from flowstudy.metrics.likelihood import GraphSolves

    shapes = []
    solve_graph = GraphSolves.__call__
    monkeypatch.setattr(GraphSolves, "__call__", lambda self, f, init, *a: shapes.append(tuple(init.shape)) or solve_graph(self, f, init, *a))
    run, heldout, train = _run_and_rows()
    plain = heldout_nll(run, heldout, train, steps=6, batch_size=20, factorised=factorised)
    assert shapes == []
    graph = heldout_nll(run, heldout, train, steps=6, batch_size=20, factorised=factorised, graph=True)
    width = K + 1 if factorised else D + 1  # the ODE state and its log-density
    assert shapes == [(20, width), (20, width), (5, width)]
    assert graph.model.nats_per_dim == plain.model.nats_per_dim and graph.gap_to_gaussian == plain.gap_to_gaussian
    assert graph.nfe == plain.nfe == 24 and not graph.graph and not plain.graph


def test_graph_solves_are_kept_per_batch_shape_and_checked():
    from flowstudy.metrics.likelihood import GraphSolves

    run, heldout, _ = _run_and_rows()
    solves = GraphSolves("cpu")
    x = torch.from_numpy(heldout).float()
    for rows in (x[:20], x[20:40], x[40:]):
        ode_log_prob(run.model, rows, estimator="exact", steps=2, solver="rk4", graph_solves=solves)
    assert sorted(k[0] for k in solves.solvers) == [(5, D + 1), (20, D + 1)]
    with pytest.raises(ConfigError, match="exact divergence only; got estimator 'hutchinson'"):
        ode_log_prob(run.model, x[:5], estimator="hutchinson", steps=2, graph_solves=solves)
    with pytest.raises(ConfigError, match=r"fixed-step solver \(euler, midpoint, heun, rk4\); got 'dopri5'"):
        heldout_nll(run, heldout, _rows(300).numpy(), solver="dopri5", graph=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_heldout_nll_on_gpu_matches_the_plain_solves():
    run, heldout, train = _run_and_rows()
    run.model = run.model.cuda()
    plain = heldout_nll(run, heldout, train, steps=6, batch_size=20)
    graph = heldout_nll(run, heldout, train, steps=6, batch_size=20, graph=True)
    assert graph.graph and not plain.graph
    assert graph.model.nats_per_dim == pytest.approx(plain.model.nats_per_dim, abs=1e-5)
    assert graph.gap_to_gaussian == pytest.approx(plain.gap_to_gaussian, abs=1e-5)
