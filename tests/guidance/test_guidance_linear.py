"""The linear surrogate, its direction basis and the ``linear`` method: the posterior written out as
a GP, Thompson draws with the posterior's moments, the shell maximum, the flow's inversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowstudy.errors import ConfigError, DataError
from flowstudy.guidance.history import History
from flowstudy.guidance.methods import create_method
from flowstudy.guidance.methods.base import Problem
from flowstudy.guidance.surrogate import DirectionBasis, LinearSurrogate

from tests.guidance.toy import toy_prior


def _rows(n: int = 60, d: int = 6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    scale = torch.linspace(2.0, 0.2, d, dtype=torch.float64)
    return 1.0 + torch.randn(n, d, generator=gen, dtype=torch.float64) * scale


def test_direction_basis_is_the_uncentred_svd_and_its_point_maximises_the_linear_function_on_the_shell():
    x = _rows()
    basis = DirectionBasis.fit(x, 6)
    torch.testing.assert_close(basis.basis @ basis.basis.T, torch.eye(6, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(basis.moments, (x @ basis.basis.T).square().mean(0), atol=1e-12, rtol=1e-12)
    assert basis.radius == pytest.approx(float(x.norm(dim=1).mean()), rel=1e-14)
    w = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    best = basis.point(w)  # [3, D]
    torch.testing.assert_close(best.norm(dim=1), torch.full((3,), basis.radius, dtype=torch.float64))
    # with k = D the features are a rotation of the shell: no point of it beats the maximum (Cauchy–Schwarz)
    others = _rows(500, seed=2)
    top = (basis.features(best) * w).sum(1)
    assert ((basis.features(others) @ w.T) <= top + 1e-12).all()
    torch.testing.assert_close(top, basis.radius * (w @ basis.basis).norm(dim=1))
    with pytest.raises(DataError, match=r"k must lie in \[1, 6\]"):
        DirectionBasis.fit(x, 7)


def _linear_data(n: int, k: int, noise: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(n, k, generator=gen, dtype=torch.float64)
    w = torch.randn(k, generator=gen, dtype=torch.float64)
    return f, f @ w + noise * torch.randn(n, generator=gen, dtype=torch.float64), w


def test_linear_surrogate_posterior_is_the_gp_posterior_of_its_kernel():
    f, y, _ = _linear_data(12, 20, 0.1)  # more directions than evaluations: the prior decides the rest
    p = torch.linspace(1.0, 0.05, 20, dtype=torch.float64)
    model = LinearSurrogate.fit(f, y, p)
    fs = torch.randn(5, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    kern = lambda a, b: model.tau2 * (a * p) @ b.T  # noqa: E731
    gram = kern(f, f) + model.noise * torch.eye(12, dtype=torch.float64)
    mean = kern(fs, f) @ torch.linalg.solve(gram, y)
    var = kern(fs, fs).diagonal() - (kern(fs, f) * torch.linalg.solve(gram, kern(f, fs)).T).sum(1)
    mu, sd = model.mean_std(fs)
    torch.testing.assert_close(mu, mean, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(sd, var.sqrt(), atol=1e-10, rtol=1e-7)
    evidence = torch.distributions.MultivariateNormal(torch.zeros(12, dtype=torch.float64), gram).log_prob(y)
    assert model.log_evidence == pytest.approx(float(evidence), abs=1e-8)


def test_linear_surrogate_picks_the_evidence_maximum_and_recovers_noise_free_weights():
    f, y, w = _linear_data(40, 5, 0.0)
    model = LinearSurrogate.fit(f, y, torch.ones(5, dtype=torch.float64))
    # noise-free data: the smallest noise of the grid, and the least-squares weights up to a shrinkage
    # of order noise / (tau^2 · smallest eigenvalue of F^T F), far below 1e-6 here
    assert model.noise == pytest.approx(float(y.square().mean()) * 1e-8)
    torch.testing.assert_close(model.mean, w, atol=1e-6, rtol=0)
    f, y, _ = _linear_data(40, 5, 0.3, seed=1)
    noisy = LinearSurrogate.fit(f, y, torch.ones(5, dtype=torch.float64))
    assert 0.3**2 / 3 < noisy.noise < 0.3**2 * 3  # the grid's step is 10^0.5
    with pytest.raises(DataError, match="linear surrogate needs"):
        LinearSurrogate.fit(f, y[:-1], torch.ones(5, dtype=torch.float64))


def test_thompson_draws_have_the_posterior_mean_and_the_tempered_covariance():
    f, y, _ = _linear_data(8, 3, 0.2)
    model = LinearSurrogate.fit(f, y, torch.ones(3, dtype=torch.float64))
    n, temperature = 40000, 0.5
    draws = model.sample_weights(n, torch.Generator().manual_seed(0), temperature)
    se = (temperature**2 * model.cov.diagonal() / n).sqrt()
    assert ((draws.mean(0) - model.mean).abs() < 5 * se).all()  # 5 standard errors
    cov = torch.cov(draws.T)
    # the sample covariance's entries have relative standard error about sqrt(2 / n) = 0.7 %
    torch.testing.assert_close(cov, temperature**2 * model.cov, rtol=0.05, atol=0.05 * float(model.cov.diagonal().max()) * temperature**2)


def test_encode_inverts_decode_with_the_euler_error_of_the_step_count():
    prior, _ = toy_prior(dim=3)
    z = prior.train_std()[:20]
    errors = []
    for steps in (16, 128):
        problem = Problem(prior, steps=steps)
        errors.append(float((problem.decode(problem.encode(z)) - z).norm(dim=1).max()))
    # Euler is first order: 8x the steps divides the round-trip error by about 8
    assert errors[1] < errors[0] / 4 and errors[1] < 0.05


def test_linear_method_proposes_the_flow_image_of_the_surrogate_maximum():
    prior, _ = toy_prior(dim=3, s=1.0)  # a broad mixture: its flow is smooth enough to invert off the modes
    problem = Problem(prior, steps=64)
    method = create_method("linear", problem, k=3, pcn=0.0, n_mean=1)
    init = method.initial(10, 0)
    w_true = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    score = lambda z: method.basis.features(prior.to_original(z)) @ w_true  # noqa: E731  linear on the shell
    history = History(init.z, score(init.z), init.noise, np.zeros(10, np.int64), np.full(10, -1))
    proposal = method.propose(history, 3, 7)
    np.testing.assert_array_equal(proposal.z.numpy(), method.propose(history, 3, 7).z.numpy())
    torch.testing.assert_close(proposal.z, problem.decode(proposal.noise), atol=0, rtol=0)  # decoded from its noise
    # the posterior mean recovers w_true from 10 noise-free evaluations of 3 directions, and the first
    # proposal is the flow's round trip (test above) of the shell's maximum along it
    mean = method.fit(history).mean
    torch.testing.assert_close(mean, w_true, atol=1e-6, rtol=0)
    target = prior.to_std(method.basis.point(mean[None]).numpy())
    torch.testing.assert_close(proposal.z[:1], problem.decode(problem.encode(target)), atol=0, rtol=0)
    assert float(score(proposal.z[:1])) > float(history.y.max())
    with pytest.raises(ConfigError, match="linear: needs 0 <= pcn <= 1"):
        create_method("linear", problem, pcn=1.5)


def test_the_default_method_is_registered_and_the_front_door_uses_it():
    import inspect

    import flowstudy as fs
    from flowstudy.guidance.methods import DEFAULT_METHOD, METHODS

    assert METHODS[DEFAULT_METHOD].name == DEFAULT_METHOD == "linear"
    assert inspect.signature(fs.optimize).parameters["method"].default == DEFAULT_METHOD


def test_default_k_is_cut_to_the_rank_of_a_small_training_set():
    prior, _ = toy_prior(dim=3)
    assert create_method("linear", Problem(prior)).basis.dim == 3  # default k = 128 > D = 3
