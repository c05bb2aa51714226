"""Objectives, surrogate and guided sampler: closed forms, the posterior written out, bit-exact lambda = 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudy.errors import ConfigError, DataError
from flowstudy.guidance.objectives import parse_objective
from flowstudy.guidance.sampler import GuidanceConfig, draw_noise, guided_sample
from flowstudy.guidance.surrogate import InputMap, Surrogate, SurrogateError
from flowstudy.solvers import solve

from tests.guidance.toy import toy_prior, toy_score

pytest.importorskip("botorch")


def test_cosine_objective_is_one_at_its_target_and_matches_the_formula(tiny_data):
    from flowstudy.data import load_dataset

    val = load_dataset(f"{tiny_data}:val").embeddings
    objective = parse_objective(f"cosine:{tiny_data}:val:3")
    y = objective(val[:5])
    t = val[3].astype(np.float64)
    expected = val[:5].astype(np.float64) @ t / (np.linalg.norm(val[:5].astype(np.float64), axis=1) * np.linalg.norm(t))
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert y.dtype == np.float64 and y[3] == pytest.approx(1.0, abs=1e-12)


def test_noise_is_reproducible_per_candidate_and_has_the_requested_scale(tiny_data):
    from flowstudy.data import load_dataset

    x = load_dataset(f"{tiny_data}:train").embeddings
    clean = parse_objective(f"cosine:{tiny_data}:val:3")(x)
    noisy = parse_objective(f"cosine:{tiny_data}:val:3,noise=0.05")
    a, b = noisy(x), noisy(x[::-1])[::-1]
    np.testing.assert_array_equal(a, b)  # a candidate's noise does not depend on its batch position
    assert np.std(a - clean) == pytest.approx(0.05, rel=0.2)


def test_topic_objective_is_the_mean_cosine_to_the_matching_rows(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    np.save(tmp_path / "train.npy", x)
    (tmp_path / "train.txt").write_text("add the units\ndraw a diagram\nUnits first\nnothing\n")
    objective = parse_objective(f"topic:{tmp_path}:train:units")
    unit = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(objective(x[3:4]), [(unit[3] @ unit[0] + unit[3] @ unit[2]) / 2], rtol=1e-6)  # rows stored as float32
    with pytest.raises(DataError, match="no text .* contains 'zebra'"):
        parse_objective(f"topic:{tmp_path}:train:zebra")


def test_python_objective_and_errors(tiny_data):
    objective = parse_objective("python:numpy:sum")
    with pytest.raises(DataError, match="returned 1 scores for 3"):
        objective(np.ones((3, 4)))
    with pytest.raises(ConfigError, match="unknown objective 'nope:x'.*cosine"):
        parse_objective("nope:x")
    with pytest.raises(ConfigError, match="out of range"):
        parse_objective(f"cosine:{tiny_data}:val:999")
    with pytest.raises(ConfigError, match="unknown option"):
        parse_objective(f"cosine:{tiny_data}:val:1,sigma=3")
    with pytest.raises(DataError, match=r"shape \[n, 16\]"):
        parse_objective(f"cosine:{tiny_data}:val:1")(np.ones((2, 5)))


def _toy_gp(k: int | None = None, kernel: str = "rbf", n: int = 16):
    prior, _ = toy_prior(dim=3)
    z = prior.train_std()[:n]
    y = torch.from_numpy(toy_score(z.numpy()))
    return Surrogate.fit(z, y, InputMap.fit(prior.train_std(), k), kernel, seed=0), prior


def test_pca_input_map_whitens_the_training_rows():
    prior, _ = toy_prior(dim=3)
    z = prior.train_std()
    m = InputMap.fit(z, 2)
    w = (z - m.mean) @ m.basis  # [N, 2]
    np.testing.assert_allclose(torch.cov(w.T).numpy(), np.eye(2), atol=1e-10)
    u = m(z)
    assert float(u.min()) == pytest.approx(0.0) and float(u.max()) == pytest.approx(1.0)


def _kernel_matrix(kernel, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """k(a, b) [n, m] from the fitted hyperparameters, written out (RBF with ARD lengthscales,
    linear, sums and scales): an independent evaluation of the GP's kernel."""
    import gpytorch.kernels as kernels

    if isinstance(kernel, kernels.AdditiveKernel):
        return sum(_kernel_matrix(part, a, b) for part in kernel.kernels)
    if isinstance(kernel, kernels.ScaleKernel):
        return kernel.outputscale.detach() * _kernel_matrix(kernel.base_kernel, a, b)
    if isinstance(kernel, kernels.RBFKernel):
        d2 = (((a[:, None, :] - b[None, :, :]) / kernel.lengthscale.detach().reshape(-1)) ** 2).sum(-1)
        return torch.exp(-0.5 * d2)
    if isinstance(kernel, kernels.LinearKernel):
        return kernel.variance.detach().reshape(()) * a @ b.T
    raise TypeError(f"no written-out form for {type(kernel).__name__}")


def _acquisition_formula(gp, z: torch.Tensor, kind: str, beta: float) -> tuple[torch.Tensor, float]:
    """UCB = mu + beta·sigma or log EI = log sigma + log(phi(u) + u·Phi(u)), u = (mu - best) / sigma, from the
    textbook posterior of an exact GP (Rasmussen & Williams, eq. 2.25-2.26) in float64, with the
    outcome standardisation undone; and cond(K + noise·I), which bounds how far two float64
    evaluations of it may differ."""
    model = gp.model
    train_u, targets = model.train_inputs[0].detach(), model.train_targets.detach()
    const, noise = model.mean_module.constant.detach(), model.likelihood.noise.detach().reshape(())
    gram = _kernel_matrix(model.covar_module, train_u, train_u) + noise * torch.eye(len(train_u), dtype=torch.float64)
    chol = torch.linalg.cholesky(gram)
    u = gp.input_map(z)  # [n, k]
    cross = _kernel_matrix(model.covar_module, u, train_u)  # [n, m]
    prior_var = torch.stack([_kernel_matrix(model.covar_module, row[None], row[None])[0, 0] for row in u])
    mean_t = const + cross @ torch.cholesky_solve((targets - const)[:, None], chol)[:, 0]
    var_t = prior_var - (cross * torch.cholesky_solve(cross.T, chol).T).sum(-1)
    shift, scale = model.outcome_transform.means.reshape(()), model.outcome_transform.stdvs.reshape(())
    mu, sigma = shift + scale * mean_t, scale * var_t.sqrt()
    if kind == "ucb":
        return mu + beta * sigma, float(torch.linalg.cond(gram))
    normal = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64))
    gap = (mu - gp.best_f) / sigma
    assert float(gap.min()) > -8  # the plain formula keeps > 13 digits there (phi + u·Phi ~ phi/u^2)
    return sigma.log() + (normal.log_prob(gap).exp() + gap * normal.cdf(gap)).log(), float(torch.linalg.cond(gram))


@pytest.mark.parametrize("kind,k,kernel", [("ucb", None, "rbf"), ("logei", None, "rbf"), ("ucb", 2, "rbf+linear")])
def test_acquisition_gradient_matches_the_posterior_formula(kind, k, kernel):
    gp, prior = _toy_gp(k, kernel)
    fitted = prior.train_std()[:16].double()
    best = torch.from_numpy(toy_score(fitted.numpy())).argsort(descending=True)[:4]
    z = (fitted[best] + 0.1).requires_grad_(True)  # beside the best evaluations: where EI is not vanishing
    value, grad = gp.acquisition_grad(z, kind, beta=2.0)
    expected, cond = _acquisition_formula(gp, z, kind, beta=2.0)
    (expected_grad,) = torch.autograd.grad(expected.sum(), z)
    # Two float64 evaluations of the same posterior differ by rounding that the solve with K
    # amplifies: at most ~ n·cond(K)·eps relative (Higham, ch. 10); the tolerance is that bound.
    rel = len(gp.model.train_targets) * cond * torch.finfo(torch.float64).eps
    np.testing.assert_allclose(value.numpy(), expected.detach().numpy(), rtol=0, atol=rel * float(expected.abs().max()))
    np.testing.assert_allclose(grad.numpy(), expected_grad.numpy(), rtol=0, atol=rel * float(expected_grad.abs().max()))
    assert rel < 1e-6  # a bound this loose would no longer test the gradient


def test_posterior_interpolates_the_evaluations_and_is_uncertain_far_away():
    gp, prior = _toy_gp()
    z = prior.train_std()[:16]
    with torch.no_grad():
        mu, sigma = gp.mean_std(z)
    y = toy_score(z.numpy())
    assert np.abs(mu.detach().numpy() - y).max() < 0.1 * y.std()
    with torch.no_grad():
        _, far = gp.mean_std(z[:2] + 50.0)
    assert float(far.min()) > 5 * float(sigma.max())


def test_failed_fit_retries_with_jitter_then_raises(monkeypatch):
    import flowstudy.guidance.surrogate as surrogate

    jitters = []

    def failing(u, y, kernel, jitter):
        jitters.append(jitter)
        raise RuntimeError("not positive definite")

    monkeypatch.setattr(surrogate, "_fit_gp", failing)
    prior, _ = toy_prior(dim=3)
    z = prior.train_std()[:10]
    with pytest.raises(SurrogateError, match="after jitter up to 0.01: not positive definite"):
        Surrogate.fit(z, torch.from_numpy(toy_score(z.numpy())), InputMap.fit(z))
    assert jitters == list(surrogate.JITTERS)
    with pytest.raises(DataError, match="finite"):
        Surrogate.fit(z, torch.full((10,), float("nan")), InputMap.fit(z))


def test_lambda_zero_is_the_unguided_sampler_bit_for_bit():
    from flowstudy.data import Standardizer
    from flowstudy.sampling import sample_standardized
    from flowstudy.run import Run

    gp, prior = _toy_gp()
    noise = draw_noise(64, 3, seed=5)
    plain = solve(prior.velocity, noise, 0.0, 1.0, method="euler", steps=20).x
    for cfg in (GuidanceConfig(strength=0.0), GuidanceConfig(strength=0.0, through_network=True, tangent=True)):
        guided = guided_sample(prior.velocity, noise, gp, cfg, steps=20)
        assert torch.equal(guided, plain.float())
    run = Run(prior.velocity, Standardizer(torch.zeros(3), torch.ones(3), 0.0, torch.ones(3)), {"config": {}})
    z, _ = sample_standardized(run, 64, solver="euler", steps=20, seed=5)  # the guided sampler integrates with Euler
    assert torch.equal(z, guided_sample(prior.velocity, noise, None, steps=20))
    assert not torch.equal(guided_sample(prior.velocity, noise, gp, GuidanceConfig(strength=0.3), steps=20), z)


@pytest.mark.parametrize("cfg", [GuidanceConfig(strength=1.0, adapt=False), GuidanceConfig(strength=1.0, adapt=False, through_network=True)])
def test_guidance_raises_the_score_and_stays_in_the_prior_support(cfg):
    """2-D mixture with three modes; the score peaks on the right mode's upper edge."""
    prior, velocity = toy_prior(dim=2)
    z = prior.train_std()[:40]
    gp = Surrogate.fit(z, torch.from_numpy(toy_score(z.numpy())), InputMap.fit(prior.train_std()), seed=0)
    noise = draw_noise(256, 2, seed=1)
    plain = guided_sample(prior.velocity, noise, None, steps=24)
    guided = guided_sample(prior.velocity, noise, gp, GuidanceConfig(**{**cfg.__dict__, "acquisition": "mean", "t1": 0.9}), steps=24)
    assert toy_score(guided.numpy()).mean() > toy_score(plain.numpy()).mean() + 1.0
    # in the support: within 4 component std of some mode, as often as unguided samples are
    in_support = lambda x: float((velocity.log_density(x) > -(4.0**2) / 2).double().mean())  # noqa: E731
    assert in_support(guided) >= in_support(plain) - 0.02
    # and more of them on the mode where the score is high
    assert float((guided[:, 0] > 1.0).double().mean()) > float((plain[:, 0] > 1.0).double().mean()) + 0.2


def test_guidance_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        GuidanceConfig(t0=0.8, t1=0.5)
    with pytest.raises(ConfigError):
        GuidanceConfig(strength=-1)
