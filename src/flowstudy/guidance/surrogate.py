"""Gaussian-process surrogate of the objective: BoTorch ``SingleTaskGP`` in float64.

Inputs are the prior's standardised embeddings z: [n, D]. A fixed :class:`InputMap` (fitted once on
the training rows, never on the evaluations) takes them to the GP's unit box: optionally the top k
principal components of the training rows, whitened, then an affine map of the training rows' range
to [0, 1]^k. BoTorch's defaults do the rest: an RBF kernel with the dimension-scaled log-normal
lengthscale prior (Hvarfner et al. 2024, "Vanilla Bayesian optimization performs great in high
dimensions"), a log-normal noise prior and standardised outcomes. ``kernel="rbf+linear"`` adds a
linear kernel (a global trend that extrapolates; Doumont et al. 2025).

A fit that fails (non-PSD covariance, NaN loss) is retried with growing Cholesky jitter, then
raises :class:`SurrogateError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from flowstudy.errors import DataError, FlowstudyError

ACQUISITIONS = ("ucb", "logei", "mean")
KERNELS = ("rbf", "rbf+linear")
JITTERS = (1e-6, 1e-4, 1e-2)


class SurrogateError(FlowstudyError, RuntimeError):
    """The GP could not be fitted to the evaluations (after jitter retries)."""


def _require_botorch():
    try:
        import botorch  # noqa: F401
        import gpytorch  # noqa: F401
    except ImportError as err:
        raise ImportError("the GP surrogate needs BoTorch: pip install 'flowstudy[gp]'") from err


@dataclass(frozen=True)
class InputMap:
    """Fixed affine map z: [n, D] -> u: [n, k], u = ((z - mean) @ basis - lo) / (hi - lo).

    ``basis`` [D, k] is the identity (k = D) or the top-k principal directions of the training rows
    divided by their standard deviations (whitened PCA). lo, hi [k]: the training rows' range there.
    """

    mean: Tensor
    basis: Tensor
    lo: Tensor
    hi: Tensor

    @classmethod
    def fit(cls, train_z: Tensor, k: int | None = None) -> InputMap:
        """From standardised training rows [N, D]; k = None keeps all D coordinates."""
        z = train_z.double()
        mean = z.mean(0)  # [D]
        if k is None:
            basis = torch.eye(z.shape[1], dtype=torch.float64)
        else:
            if not 1 <= k <= min(z.shape):
                raise DataError(f"PCA dimension k must lie in [1, {min(z.shape)}]; got {k}")
            _, s, vh = torch.linalg.svd(z - mean, full_matrices=False)
            std = s[:k] / math.sqrt(z.shape[0] - 1)
            basis = vh[:k].T / std  # [D, k]
        w = (z - mean) @ basis  # [N, k]
        return cls(mean, basis, w.min(0).values, w.max(0).values)

    @property
    def dim(self) -> int:
        return int(self.basis.shape[1])

    def __call__(self, z: Tensor) -> Tensor:
        return ((z.double() - self.mean) @ self.basis - self.lo) / (self.hi - self.lo)

    def state(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "basis": self.basis, "lo": self.lo, "hi": self.hi}


class Surrogate:
    """A fitted GP over standardised embeddings; posterior and acquisition, differentiable in z."""

    def __init__(self, model, input_map: InputMap, best_f: float) -> None:
        self.model = model
        self.input_map = input_map
        self.best_f = best_f

    @classmethod
    def fit(cls, z: Tensor, y: Tensor, input_map: InputMap, kernel: str = "rbf", seed: int = 0) -> Surrogate:
        """Fit to evaluations z: [n, D] (standardised) and y: [n] (higher is better)."""
        _require_botorch()
        if kernel not in KERNELS:
            raise DataError(f"unknown kernel {kernel!r}; valid: {', '.join(KERNELS)}")
        if z.ndim != 2 or z.shape[1] != input_map.mean.shape[0] or y.shape != (z.shape[0],):
            raise DataError(f"surrogate needs z [n, {input_map.mean.shape[0]}] and y [n]; got {tuple(z.shape)}, {tuple(y.shape)}")
        if z.shape[0] < 2 or not torch.isfinite(y).all():
            raise DataError(f"surrogate needs at least 2 finite scores; got {int(torch.isfinite(y).sum())}")
        u, y64 = input_map(z), y.double()[:, None]
        last: Exception | None = None
        for jitter in JITTERS:
            torch.manual_seed(seed)
            try:
                model = _fit_gp(u, y64, kernel, jitter)
                return cls(model, input_map, float(y.max()))
            except Exception as err:  # NotPSDError, NaN loss, ... : retry with more jitter
                last = err
        raise SurrogateError(f"GP fit failed on {z.shape[0]} points after jitter up to {JITTERS[-1]}: {last}")

    def _u(self, z: Tensor) -> Tensor:
        return self.input_map(z)[:, None, :]  # [n, 1, k]: one marginal per point, no joint n x n

    def mean_std(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and std [n] of the objective (original score units) at z: [n, D]."""
        post = self.model.posterior(self._u(z))
        return post.mean.reshape(-1), post.variance.clamp_min(1e-18).sqrt().reshape(-1)

    def acquisition(self, z: Tensor, kind: str = "ucb", beta: float = 2.0) -> Tensor:
        """acq(z) [n]: ``ucb`` = mu + beta·sigma (beta, not BoTorch's sqrt(beta)), ``logei`` = log EI over
        the best score so far, ``mean`` = mu. Differentiable in z."""
        if kind == "logei":
            from botorch.acquisition.analytic import LogExpectedImprovement

            # best_f as a float64 tensor: BoTorch stores a Python float as a float32 buffer, which
            # shifts log EI by ~1e-8 and its gradient with it
            best_f = torch.tensor(self.best_f, dtype=torch.float64)
            return LogExpectedImprovement(self.model, best_f=best_f)(self._u(z))
        if kind not in ACQUISITIONS:
            raise DataError(f"unknown acquisition {kind!r}; valid: {', '.join(ACQUISITIONS)}")
        mu, sigma = self.mean_std(z)
        return mu if kind == "mean" else mu + beta * sigma

    def acquisition_grad(self, z: Tensor, kind: str = "ucb", beta: float = 2.0) -> tuple[Tensor, Tensor]:
        """(acq [n], d acq / d z [n, D]) at z: [n, D], float64."""
        z = z.detach().double().requires_grad_(True)
        with torch.enable_grad():
            value = self.acquisition(z, kind, beta)
            (grad,) = torch.autograd.grad(value.sum(), z)
        return value.detach(), grad

    @property
    def prior_std(self) -> float:
        """The GP's prior std of the objective in score units: BoTorch's default RBF kernel has unit
        variance on standardised outcomes, so this is the outcomes' std."""
        return float(self.model.outcome_transform.stdvs.reshape(-1)[0])


def _fit_gp(u: Tensor, y: Tensor, kernel: str, jitter: float):
    import gpytorch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
    from gpytorch.mlls import ExactMarginalLogLikelihood

    covar = None
    if kernel == "rbf+linear":
        covar = get_covar_module_with_dim_scaled_prior(ard_num_dims=u.shape[-1]) + gpytorch.kernels.LinearKernel()
    with warnings.catch_warnings(), gpytorch.settings.cholesky_jitter(float_value=jitter, double_value=jitter):
        warnings.simplefilter("ignore")  # BoTorch's unit-cube check: PCA inputs of new points may leave the box
        model = SingleTaskGP(u, y, covar_module=covar)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    model.eval()
    mu = model.posterior(u[:1]).mean
    if not torch.isfinite(mu).all():
        raise SurrogateError("non-finite posterior after fitting")
    return model


def box_map(lo: Tensor, hi: Tensor) -> InputMap:
    """Identity coordinates with a fixed box [lo, hi] -> [0, 1]^D (e.g. the flow's noise space)."""
    dim = lo.shape[0]
    return InputMap(torch.zeros(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64), lo.double(), hi.double())


def unmap_box(input_map: InputMap, u: Tensor) -> Tensor:
    """Inverse of an identity-basis map: u [n, D] in the unit box -> z [n, D]."""
    return input_map.mean + input_map.lo + u.double() * (input_map.hi - input_map.lo)


@dataclass(frozen=True)
class DirectionBasis:
    """The top-k uncentred principal directions of the training rows, in the original space.

    ``basis`` [k, D]: orthonormal rows, the right singular vectors of the raw (uncentred) training
    matrix, so the first is close to the rows' mean direction; ``moments`` [k]: the rows' mean
    squared coordinate along each; ``radius``: the rows' mean norm.

    ``features(x)`` [n, k] = radius · (x / ||x||) @ basis^T: coordinates of the candidates' directions,
    put on the shell of radius ``radius``; ``point(w)`` [m, D] = radius · (w @ basis) / ||w @ basis||:
    the point of that shell that maximises the linear function w·features (the maximum of a linear
    function over a sphere lies along its gradient).
    """

    basis: Tensor
    moments: Tensor
    radius: float

    @classmethod
    def fit(cls, rows: Tensor, k: int) -> DirectionBasis:
        """From training rows [N, D] (original space); 1 <= k <= min(N, D)."""
        x = torch.as_tensor(rows).double()
        if not 1 <= k <= min(x.shape):
            raise DataError(f"direction basis: k must lie in [1, {min(x.shape)}]; got {k}")
        _, s, vh = torch.linalg.svd(x, full_matrices=False)
        return cls(vh[:k].clone(), s[:k].square() / x.shape[0], float(x.norm(dim=1).mean()))

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    def features(self, x: Tensor) -> Tensor:
        """x [n, D] original space -> [n, k] float64."""
        x = torch.as_tensor(x).double()
        return self.radius * (x / x.norm(dim=1, keepdim=True).clamp_min(1e-30)) @ self.basis.T

    def point(self, w: Tensor) -> Tensor:
        """Weights [m, k] -> the points [m, D] of norm ``radius`` along w @ basis."""
        g = w.double() @ self.basis  # [m, D]
        return self.radius * g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)


LOG_SIGNAL = tuple(float(v) for v in torch.linspace(-3.0, 2.0, 11))
LOG_NOISE = tuple(float(v) for v in torch.linspace(-8.0, -1.0, 15))


class LinearSurrogate:
    """Bayesian linear regression y = f·w + e, w_j ~ N(0, tau^2·p_j), e ~ N(0, s^2): a GP with the
    kernel k(f, f') = tau^2 · sum_j p_j f_j f'_j (Rasmussen & Williams 2006, §2.1).

    No intercept: on a shell of fixed radius a constant is a multiple of the feature along the
    rows' mean direction. tau^2 and s^2 are chosen by the marginal likelihood (type II maximum
    likelihood) over a grid of log10 multiples of the scores' mean square (``LOG_SIGNAL`` for tau^2
    times the features' prior variance, ``LOG_NOISE`` for s^2): a grid, not a gradient search, so a
    fit is deterministic and cannot fail to converge at n ~ 100 and k ~ 256. The posterior is
    w | data ~ N(mu, C), C = (F^T F / s^2 + diag(1 / (tau^2 p)))^-1, mu = C F^T y / s^2.
    """

    def __init__(self, mean: Tensor, cov: Tensor, tau2: float, noise: float, log_evidence: float) -> None:
        self.mean, self.cov = mean, cov
        self.tau2, self.noise, self.log_evidence = tau2, noise, log_evidence

    @classmethod
    def fit(cls, f: Tensor, y: Tensor, prior_var: Tensor) -> LinearSurrogate:
        """Features f [n, k], scores y [n], relative prior variances p [k] (> 0)."""
        f, y, p = f.double(), y.double(), prior_var.double()
        n, k = f.shape
        if y.shape != (n,) or p.shape != (k,) or n < 1 or not torch.isfinite(y).all() or not (p > 0).all():
            shapes = f"{tuple(f.shape)}, {tuple(y.shape)}, {tuple(p.shape)}"
            raise DataError(f"linear surrogate needs f [n, k], finite y [n] and p [k] > 0; got {shapes}")
        scale = float(y.square().mean().clamp_min(1e-30))
        gram = (f * p) @ f.T  # [n, n]
        unit = scale / float(gram.diagonal().mean().clamp_min(1e-30))
        best = None
        for ls in LOG_SIGNAL:
            for ln in LOG_NOISE:
                tau2, s2 = unit * 10.0**ls, scale * 10.0**ln
                value = _log_evidence(tau2 * gram, s2, y)
                if best is None or value > best[0]:
                    best = (value, tau2, s2)
        value, tau2, s2 = best
        precision = f.T @ f / s2 + torch.diag(1.0 / (tau2 * p))  # [k, k]
        cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))
        cov = (cov + cov.T) / 2
        return cls(cov @ f.T @ y / s2, cov, tau2, s2, value)

    def mean_std(self, f: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and std [n] of the noise-free objective at features f [n, k]."""
        f = f.double()
        return f @ self.mean, ((f @ self.cov) * f).sum(1).clamp_min(0).sqrt()

    def sample_weights(self, n: int, generator: torch.Generator, temperature: float = 1.0) -> Tensor:
        """n posterior draws of w [n, k] (Thompson sampling), the spread scaled by ``temperature``."""
        chol = torch.linalg.cholesky(self.cov + 1e-12 * self.cov.diagonal().mean() * torch.eye(len(self.mean), dtype=torch.float64))
        xi = torch.randn(n, len(self.mean), generator=generator, dtype=torch.float64)
        return self.mean + temperature * xi @ chol.T


def _log_evidence(k: Tensor, s2: float, y: Tensor) -> float:
    """log N(y; 0, K + s^2 I) for K [n, n] and y [n]."""
    chol, info = torch.linalg.cholesky_ex(k + s2 * torch.eye(len(y), dtype=k.dtype))
    if int(info) != 0:
        return -math.inf
    alpha = torch.cholesky_solve(y[:, None], chol)[:, 0]
    return float(-0.5 * y @ alpha - chol.diagonal().log().sum() - 0.5 * len(y) * math.log(2 * math.pi))
