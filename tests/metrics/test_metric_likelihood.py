"""Held-out NLL: the ODE density against closed forms (Gaussian base field, linear flows), exact
divergence against Hutchinson, and the original-space conversion against a known affine map."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from flowstudy.data import Standardizer
from flowstudy.errors import ConfigError
from flowstudy.flows.divergence import divergence_exact, divergence_hutchinson, rademacher
from flowstudy.flows.gaussian_base import GaussianBaseField, WithBaseField
from flowstudy.flows.paths import Straight
from flowstudy.metrics.likelihood import gaussian_fit, gaussian_log_prob, heldout_nll, ode_log_prob
from flowstudy.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")

D = 6



def _correlated(n: int, d: int = D, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ (torch.eye(d, dtype=torch.float64) + mix) + 0.5


def _untrained_with_base(x1: torch.Tensor) -> nn.Module:
    """An untrained network (zero-initialised output: v = 0) plus the Gaussian base field of x1."""
    net = create_model("mlp-tiny", input_dim=x1.shape[1]).double()
    return WithBaseField(net, GaussianBaseField.fit(x1, Straight())).eval()


def test_untrained_network_with_base_field_has_the_gaussian_closed_form():
    train = _correlated(200)
    model = _untrained_with_base(train)
    x = _correlated(16, seed=1)
    assert model.net(x, torch.rand(16, dtype=torch.float64)).abs().max() == 0  # the network adds nothing yet
    log_p, nfe = ode_log_prob(lambda y, t: model(y, t), x, estimator="exact", solver="rk4", steps=20)
    base = model.base
    expected = gaussian_log_prob(x, base.mean, base.eigvecs, base.eigvals)  # [B]
    assert nfe == 80 and log_p.shape == (1, 16)
    # RK4's error and the base field's float32 round-off, per row (log p from -7 to -82 here)
    np.testing.assert_allclose(log_p[0].numpy(), expected.numpy(), rtol=1e-5, atol=1e-4)


def test_linear_flow_between_gaussians_is_exact():
    """v(x, t) = A x + c from N(0, I) gives x_1 = e^A x_0 + A^{-1}(e^A - I) c ~ N(mu, e^A e^{A^T})."""
    g = torch.Generator().manual_seed(3)
    a = 0.4 * torch.randn(D, D, generator=g, dtype=torch.float64)
    c = torch.randn(D, generator=g, dtype=torch.float64)
    ea = torch.linalg.matrix_exp(a)
    mu = torch.linalg.solve(a, (ea - torch.eye(D, dtype=torch.float64)) @ c)
    cov = ea @ ea.T
    x = mu + torch.randn(32, D, generator=g, dtype=torch.float64) @ ea.T
    expected = torch.distributions.MultivariateNormal(mu, covariance_matrix=cov).log_prob(x)
    log_p, _ = ode_log_prob(lambda y, t: y @ a.T + c, x, estimator="exact", solver="rk4", steps=16)
    np.testing.assert_allclose(log_p[0].numpy(), expected.numpy(), rtol=0, atol=1e-5)  # RK4, h = 1/16
    # a wrong sign of the divergence term or of the time direction would be off by 2 tr(A) per row
    assert abs(2 * float(torch.trace(a))) > 0.1


def test_exact_divergence_is_the_jacobian_trace():
    net = nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, D)).double()
    x, t = _correlated(5), torch.full((5,), 0.3, dtype=torch.float64)
    _, div = divergence_exact(lambda y, _t: net(y), x, t, chunk=4)  # chunks that do not divide D
    jac = torch.stack([torch.autograd.functional.jacobian(net, row) for row in x])  # [B, D, D]
    np.testing.assert_allclose(div.numpy(), jac.diagonal(dim1=1, dim2=2).sum(-1).numpy(), rtol=1e-12)
    probes = rademacher(3, 5, D, torch.Generator().manual_seed(0), "cpu").double()
    _, quad = divergence_hutchinson(lambda y, _t: net(y), x, t, probes)
    np.testing.assert_allclose(quad.numpy(), torch.einsum("kbi,bij,kbj->kb", probes, jac, probes).numpy(), rtol=1e-12)


def test_exact_and_hutchinson_agree_within_its_standard_error():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D + 1, 32), nn.Tanh(), nn.Linear(32, D)).double()

    def velocity(y, t):
        return net(torch.cat([y, t[:, None]], 1))

    x = _correlated(48, seed=2)
    exact, _ = ode_log_prob(velocity, x, estimator="exact", steps=10)
    hutch, _ = ode_log_prob(velocity, x, estimator="hutchinson", probes=8, steps=10, seed=1)
    exact_mean, hutch_mean = float(exact.mean()), float(hutch.mean())
    se = float(hutch.var(0).sum().div(8).sqrt()) / 48  # of the mean over rows and probes
    assert se > 1e-3  # the probes do vary: the comparison has teeth
    assert abs(hutch_mean - exact_mean) < 3 * se
    assert hutch.shape == (8, 48)


def test_original_space_nll_follows_the_affine_change_of_variables():
    """Rows x = m + s * z with z from the base field's Gaussian: -log p_x = -log p_z + sum log s."""
    train_z = _correlated(300)
    model = _untrained_with_base(train_z)
    scale = torch.linspace(0.01, 2.0, D, dtype=torch.float64)
    shift = torch.linspace(-1.0, 1.0, D, dtype=torch.float64)
    std = Standardizer(shift, scale, 0.1, scale)
    run = SimpleNamespace(model=model, standardizer=std)
    heldout = _correlated(40, seed=5) * scale + shift  # original space
    train = train_z * scale + shift
    res = heldout_nll(run, heldout.numpy(), train.numpy(), estimator="exact", steps=10, batch_size=32)
    # the flow's density pushed through x = shift + scale * z is N(shift + scale*mu, diag(s) S diag(s))
    base = model.base
    cov_z = base.eigvecs.double() @ torch.diag(base.eigvals.double()) @ base.eigvecs.double().T
    dist = torch.distributions.MultivariateNormal(shift + scale * base.mean.double(), covariance_matrix=cov_z * torch.outer(scale, scale))
    expected = -float(dist.log_prob(heldout).mean()) / D
    assert res.model.nats_per_dim == pytest.approx(expected, abs=1e-4)
    assert res.model.bits_per_dim == pytest.approx(expected / math.log(2), abs=2e-4)
    assert res.model.nats_per_dim - res.model.nats_per_dim_standardised == pytest.approx(float(torch.log(scale).mean()))
    # the diagonal fit is per-dimension normals of the original rows with their unbiased variance
    var = train.var(0)
    diag = -float(torch.distributions.Normal(train.mean(0), var.sqrt()).log_prob(heldout).sum(1).mean()) / D
    assert res.gaussian_diagonal.nats_per_dim == pytest.approx(diag, rel=1e-9)
    # the flow is the base field fitted (without augmentation) to these training rows: no gap
    assert abs(res.gap_to_gaussian) < 1e-4
    assert res.estimator == "exact" and res.model.std_error == 0.0 and res.nfe == 40


def test_full_fit_is_the_ledoit_wolf_gaussian_of_the_base_field():
    train = _correlated(50, d=12)
    mean, vecs, vals, rho = gaussian_fit(train, "full")
    base = GaussianBaseField.fit(train, Straight())
    assert rho == pytest.approx(base.shrinkage)
    np.testing.assert_allclose(vals.numpy(), base.eigvals.double().numpy(), rtol=1e-5)
    x = _correlated(4, d=12, seed=9)
    np.testing.assert_allclose(
        gaussian_log_prob(x, mean, vecs, vals).numpy(), gaussian_log_prob(x, base.mean, base.eigvecs, base.eigvals).numpy(), rtol=1e-5
    )


def test_bad_input_is_named():
    f = lambda y, t: y  # noqa: E731
    with pytest.raises(ConfigError, match="unknown NLL estimator 'jvp'"):
        ode_log_prob(f, torch.zeros(2, 3), estimator="jvp")
    with pytest.raises(ConfigError, match="probes must be an integer >= 1; got 0"):
        ode_log_prob(f, torch.zeros(2, 3), probes=0)
    with pytest.raises(ConfigError, match="unknown Gaussian fit 'banded'"):
        gaussian_fit(torch.zeros(4, 2), "banded")


def test_gaussian_log_prob_of_eigen_coordinates_is_their_marginal():
    x = _correlated(20, seed=7)
    base = _untrained_with_base(_correlated(300)).base
    vecs, vals = base.eigvecs.double(), base.eigvals.double()
    full = gaussian_log_prob(x, base.mean, vecs, vals)
    # independent in the eigenbasis: the full density is the product of the two groups' marginals
    parts = [gaussian_log_prob(x, base.mean, vecs[:, cols], vals[cols]) for cols in (slice(0, 3), slice(3, None))]
    np.testing.assert_allclose((parts[0] + parts[1]).numpy(), full.numpy(), rtol=1e-12)
    # one direction: the 1-D normal density of that coordinate
    y = (x.double() - base.mean.double()) @ vecs[:, 0]
    one = -0.5 * (y**2 / vals[0] + torch.log(2 * math.pi * vals[0]))
    np.testing.assert_allclose(gaussian_log_prob(x, base.mean, vecs[:, :1], vals[:1]).numpy(), one.numpy(), rtol=1e-12)


def test_networks_that_torch_func_refuses_fall_back_to_autograd(old_style_tanh):
    lin1, lin2 = nn.Linear(D, 16).double(), nn.Linear(16, D).double()

    def velocity(y, t):
        return lin2(old_style_tanh(lin1(y)))

    x = _correlated(6, seed=4)
    with pytest.raises(RuntimeError, match="autograd.Function"):
        divergence_exact(velocity, x, torch.zeros(6, dtype=torch.float64))
    _, div = divergence_exact(velocity, x, torch.zeros(6, dtype=torch.float64), chunk=4, functional=False)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda r: velocity(r[None], None)[0], row) for row in x])
    np.testing.assert_allclose(div.numpy(), jac.diagonal(dim1=1, dim2=2).sum(-1).numpy(), rtol=1e-12)
    # the ODE switches by itself and gives what the functional path gives for the same maths
    reference = lambda y, t: lin2(torch.tanh(lin1(y)))  # noqa: E731
    log_p, _ = ode_log_prob(velocity, x, estimator="exact", steps=3)
    expected, _ = ode_log_prob(reference, x, estimator="exact", steps=3)
    np.testing.assert_allclose(log_p.numpy(), expected.numpy(), rtol=1e-12)


@pytest.mark.gpu
def test_auto_is_exact_on_cuda_and_matches_the_closed_form():
    train_z = _correlated(300)
    model = _untrained_with_base(train_z).float().cuda()
    std = Standardizer(torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64), 0.1, torch.ones(D, dtype=torch.float64))
    res = heldout_nll(SimpleNamespace(model=model, standardizer=std), _correlated(40, seed=5).numpy(), train_z.numpy(), steps=20)
    assert res.estimator == "exact" and res.device.startswith("cuda")
    base = model.base
    expected = -float(gaussian_log_prob(_correlated(40, seed=5), base.mean.cpu(), base.eigvecs.cpu(), base.eigvals.cpu()).mean()) / D
    assert res.model.nats_per_dim == pytest.approx(expected, abs=1e-4)
