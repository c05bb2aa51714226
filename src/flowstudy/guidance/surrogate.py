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
