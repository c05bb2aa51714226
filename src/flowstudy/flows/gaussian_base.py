"""The Gaussian base field: the exact velocity for Gaussian data, so networks learn only the rest.

For data x1 ~ N(mu, S), independent noise x0 ~ N(0, I) and z ~ N(0, I), a path
x_t = a·x1 + b·x0 + g·z with target u_t = a'·x1 + b'·x0 + g'·z (:mod:`flowstudy.flows.paths`)
has jointly Gaussian (x_t, u_t), and the flow-matching optimum is linear:

    E[u_t | x_t = x] = a'·mu + C_t (a^2·S + (b^2 + g^2)·I)^{-1} (x - a·mu),
    C_t = a'a·S + (b'b + g'g)·I.

In the eigenbasis S = V diag(lam) V^T this is a per-direction gain

    gain_k(t) = (a'a·lam_k + b'b + g'g) / (a^2·lam_k + b^2 + g^2).

A run with ``base_field = "gaussian"`` uses v(x, t) = base(x, t) + net(x, t): the network
regresses the residual u_t - base(x_t, t), so the optimum of the loss is unchanged (any fixed base
leaves E[u_t | x_t] the minimiser of the sum), but an untrained or under-trained network already
samples the Gaussian fit of the data, with its covariance and norm, rather than shrunken noise.

S is estimated from the training rows (a run's ``base_fit = "train"``) or from augmented draws of
them (``"augmented"``) with Ledoit–Wolf shrinkage toward a multiple of the identity (Ledoit & Wolf
2004, "A well-conditioned estimator for large-dimensional covariance matrices"): with N < D rows
the sample covariance is singular, and the base would send every direction outside the rows' span
to zero. Fitted to the training rows, the base is exactly the Gaussian fit that held-out NLL is
compared with (:func:`flowstudy.metrics.likelihood.gaussian_fit`); fitted to rows + N(0, σ²) it is
wider by σ² in every direction and, for the builtin data, 0.05 nats/dim worse at σ = 0.3
(docs/results/recipes/NOTES.md). :mod:`flowstudy.flows.subspace` confines the network to the
base's top principal directions.
"""

from __future__ import annotations

import math
import torch
from torch import Tensor, nn

from flowstudy.flows.paths import InterpolantPath

def ledoit_wolf(x: Tensor) -> tuple[Tensor, float]:
    """Shrunk covariance (1 - rho)·S + rho·(tr S / D)·I of rows x: [N, D], and rho in [0, 1].

    S is the maximum-likelihood covariance (divided by N); rho is the Ledoit–Wolf estimate
    min(b^2, d^2) / d^2 with d^2 = |S - m I|_F^2 and b^2 = sum_k |x_k x_k^T - S|_F^2 / N^2
    (x_k centred). Computed in float64.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"ledoit_wolf needs [N, D] rows with N >= 2; got {tuple(x.shape)}")
    x = x.double()
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n  # [D, D]
    m = s.diagonal().mean()
    d2 = ((s - m * torch.eye(d, dtype=s.dtype, device=s.device)) ** 2).sum()
    # sum_k |x_k x_k^T - S|_F^2 = sum_k |x_k|^4 - N |S|_F^2
    b2 = ((xc.square().sum(1) ** 2).sum() - n * (s**2).sum()) / n**2
    rho = 1.0 if float(d2) == 0.0 else float(torch.clamp(b2 / d2, 0.0, 1.0))
    shrunk = (1 - rho) * s
    shrunk.diagonal().add_(rho * m)
    return shrunk, rho


def times_per_row(t: float | Tensor, x: Tensor) -> Tensor:
    """t (a float, a 0-d or a [B] tensor) as float32 [B] on x's device, one per row of x [B, ...]."""
    return torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])


class GaussianBaseField(nn.Module):
    """base(x, t) = E[u_t | x_t = x] for N(mean, cov) data under ``path`` (module docstring).

    Buffers: mean [D], eigvecs [D, D] (columns), eigvals [D]; computed in float32 whatever the
    caller's precision. ``path`` must be the run's interpolant path.
    """

    def __init__(self, path: InterpolantPath, mean: Tensor, eigvecs: Tensor, eigvals: Tensor, shrinkage: float = math.nan):
        super().__init__()
        if eigvals.min() <= 0:
            raise ValueError(f"the covariance must be positive definite; smallest eigenvalue {float(eigvals.min()):.3g}")
        self.path = path
        self.shrinkage = float(shrinkage)
        self.register_buffer("mean", mean.float())
        self.register_buffer("eigvecs", eigvecs.float())
        self.register_buffer("eigvals", eigvals.float())

    @classmethod
    def fit(cls, x1: Tensor, path: InterpolantPath) -> GaussianBaseField:
        """Fit N(mean, Ledoit–Wolf covariance) to rows x1: [N, D] (standardised training data)."""
        cov, rho = ledoit_wolf(x1)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        return cls(path, x1.double().mean(0), eigvecs, eigvals, shrinkage=rho)

    @classmethod
    def from_state(cls, state: dict, path: InterpolantPath) -> GaussianBaseField:
        return cls(path, state["mean"], state["eigvecs"], state["eigvals"], state.get("shrinkage", math.nan))

    def state(self) -> dict:
        """What a checkpoint stores (the path is rebuilt from the run's flow)."""
        return {"mean": self.mean.cpu(), "eigvecs": self.eigvecs.cpu(), "eigvals": self.eigvals.cpu(), "shrinkage": self.shrinkage}

    def gains(self, t: Tensor, dims: slice = slice(None)) -> tuple[Tensor, Tensor, Tensor]:
        """Per-direction gain [B, D] (of the eigen-directions ``dims`` only: [B, |dims|]) and the
        mean's coefficients a(t), a'(t), each [B, 1]."""
        c = self.path.coefficients(t[:, None].float())  # [B, 1] each
        lam = self.eigvals[None, dims]  # [1, D]
        num = c.d_alpha * c.alpha * lam + c.d_beta * c.beta + c.d_gamma * c.gamma
        den = c.alpha**2 * lam + c.beta**2 + c.gamma**2
        return num / den, c.alpha, c.d_alpha

    def in_eigenbasis(self) -> DiagonalGaussianBase:
        """This field in the coordinates w = Rᵀx of its eigenvectors, largest eigenvalue first."""
        order = torch.argsort(self.eigvals, descending=True)
        rotation = self.eigvecs[:, order]
        return DiagonalGaussianBase(self.path, self.mean @ rotation, rotation, self.eigvals[order], self.shrinkage)

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x: [B, D], t: float or [B] -> [B, D] in x's dtype."""
        t = times_per_row(t, x)
        with torch.autocast(x.device.type, enabled=False):
            gain, a, da = self.gains(t)
            centred = x.float() - a * self.mean  # [B, D]
            v = ((centred @ self.eigvecs) * gain) @ self.eigvecs.T + da * self.mean
        return v.to(x.dtype)


class DiagonalGaussianBase(GaussianBaseField):
    """A base field in its own eigenbasis: coordinates w = Rᵀx, R = its eigenvectors sorted by
    decreasing eigenvalue, where the field is elementwise,

        base(w, t) = (w - a(t) m̃) ⊙ gain(t) + a'(t) m̃,   m̃ = Rᵀ mean,

    no [B, D] x [D, D] product. Build it with :meth:`GaussianBaseField.in_eigenbasis`. Its buffers
    are named as a GaussianBaseField's (so stacked training groups stack them alike): ``mean`` holds
    m̃, ``eigvals`` the sorted eigenvalues, ``eigvecs`` R (unused by :meth:`forward`)."""

    unread_buffers = ("eigvecs",)
    """Buffers :meth:`forward` never reads (stacked training groups do not stack them)."""

    def in_eigenbasis(self) -> DiagonalGaussianBase:
        return self

    def leading(self, k: int) -> DiagonalGaussianBase:
        """This field on its first k coordinates alone (each depends only on itself): ``mean`` and
        ``eigvals`` cut to their first k entries; ``eigvecs`` stays R [D, D], the step's rotation."""
        return DiagonalGaussianBase(self.path, self.mean[:k], self.eigvecs, self.eigvals[:k], self.shrinkage)

    def forward(self, w: Tensor, t: float | Tensor, dims: slice = slice(None)) -> Tensor:
        """w: [B, D] eigen-coordinates (or the coordinates ``dims`` alone, each of which depends
        only on itself), t: float or [B] -> w's shape in w's dtype."""
        t = times_per_row(t, w)
        with torch.autocast(w.device.type, enabled=False):
            gain, a, da = self.gains(t, dims)
            mean = self.mean[dims]
            v = (w.float() - a * mean) * gain + da * mean
        return v.to(w.dtype)


class WithBaseField(nn.Module):
    """v(x, t) = base(x, t) + net(x, t); the network keeps its own ``arch`` and ``config``."""

    def __init__(self, net: nn.Module, base: GaussianBaseField):
        super().__init__()
        self.net = net
        self.base = base

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        return self.net(x, t) + self.base(x, t)


__all__ = ["DiagonalGaussianBase", "GaussianBaseField", "WithBaseField", "ledoit_wolf", "times_per_row"]
