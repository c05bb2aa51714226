"""What every method shares: the problem (prior, training rows, surrogate settings) and its helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from flowstudy.guidance.history import History, Proposal
from flowstudy.guidance.prior import Prior
from flowstudy.guidance.sampler import draw_noise, guided_sample
from flowstudy.guidance.surrogate import InputMap, Surrogate


@dataclass
class Problem:
    """A prior, its standardised training rows [N, D] and how surrogates are built.

    ``pca_k``: GP inputs are the top-k whitened principal components of the training rows
    (None: all D standardised coordinates). ``steps``: Euler steps per decoding.
    """

    prior: Prior
    steps: int = 32
    pca_k: int | None = 32
    kernel: str = "rbf"
    options: dict = field(default_factory=dict)

    @cached_property
    def train_z(self) -> Tensor:
        return self.prior.train_std()

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return self.prior.dim

    @cached_property
    def input_map(self) -> InputMap:
        return InputMap.fit(self.train_z, self.pca_k)

    @cached_property
    def full_map(self) -> InputMap:
        return InputMap.fit(self.train_z, None)

    def decode(self, noise: Tensor) -> Tensor:
        """Unguided samples [n, D] float64 from noise [n, D]."""
        return guided_sample(self.prior.velocity, noise, steps=self.steps).double()

    def encode(self, z: Tensor) -> Tensor:
        """The noise [n, D] float32 that :meth:`decode` takes to z [n, D] (standardised): the same ODE
        integrated backward from t = 1 to t = 0 with as many Euler steps."""
        from flowstudy.solvers import solve

        with torch.no_grad():
            return solve(self.prior.velocity, z.float(), 1.0, 0.0, steps=self.steps).x.float()

    def fit(self, history: History, seed: int, input_map: InputMap | None = None, rows: np.ndarray | None = None) -> Surrogate:
        """The GP surrogate on the history (or its ``rows``), through the problem's input map."""
        z = history.z if rows is None else history.z[rows]
        y = history.y if rows is None else history.y[rows]
        return Surrogate.fit(z, y, input_map or self.input_map, self.kernel, seed=seed)


class Method:
    """``propose(history, q, seed) -> Proposal``; ``initial(n, seed)``: the shared initial design
    (n prior samples) unless a method overrides it."""

    name = "method"

    def __init__(self, problem: Problem) -> None:
        self.problem = problem

    def initial(self, n: int, seed: int) -> Proposal:
        """The initial design: n prior samples from seeded noise."""
        noise = draw_noise(n, self.problem.dim, seed)
        return Proposal.from_flow(self.problem.decode(noise), noise)

    def propose(self, history: History, q: int, seed: int) -> Proposal:
        """The next q candidates given the history (each method overrides this)."""
        raise NotImplementedError


def top(scores: Tensor, q: int) -> Tensor:
    """Indices of the q largest scores [q], best first."""
    return torch.argsort(scores, descending=True, stable=True)[:q]


def trust_region_noise(history: History, n: int, seed: int, n_best: int = 4, sigma: tuple[float, float] = (0.3, 0.7)) -> Tensor:
    """n noises [n, D] around the noises of the n_best best evaluations that came from the flow.

    eps' = sqrt(1 - s^2)·eps_c + s·xi with xi ~ N(0, I), s ~ U(sigma): a preconditioned
    Crank–Nicolson step (Cotter et al. 2013), so each draw is still exactly N(0, I) and decodes to
    a sample of the prior, near the centre's for small s.
    """
    rows = history.with_noise()
    centres = history.noise[rows[np.argsort(-history.y[rows].numpy(), kind="stable")[:n_best]]]  # [c, D]
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(centres), (n,), generator=gen)
    s = sigma[0] + (sigma[1] - sigma[0]) * torch.rand(n, 1, generator=gen)
    xi = torch.randn(n, history.noise.shape[1], generator=gen)
    return pcn_step(centres[pick], s, xi)


def pcn_step(noise: Tensor, s: Tensor | float, xi: Tensor) -> Tensor:
    """sqrt(1 - s^2)·noise + s·xi [n, D]: a preconditioned Crank–Nicolson step of size s in [0, 1]
    (xi ~ N(0, I) [n, D]); it leaves N(0, I) invariant."""
    s = torch.as_tensor(s, dtype=noise.dtype)
    return torch.sqrt(1 - s**2) * noise + s * xi


def candidate_noise(history: History, n: int, seed: int, tr_fraction: float, **tr) -> Tensor:
    """n noises: a fraction from the noise-space trust region, the rest fresh N(0, I) draws."""
    n_tr = int(round(n * tr_fraction)) if len(history.with_noise()) else 0
    fresh = draw_noise(n - n_tr, history.noise.shape[1], seed)
    if n_tr == 0:
        return fresh
    return torch.cat([trust_region_noise(history, n_tr, seed + 1, **tr), fresh])


def noise_box(dim: int) -> tuple[Tensor, Tensor]:
    """A fixed box for GP inputs in noise space: +-4 standard deviations."""
    bound = torch.full((dim,), 4.0, dtype=torch.float64)
    return -bound, bound


__all__ = ["Method", "Problem", "candidate_noise", "noise_box", "pcn_step", "top", "trust_region_noise"]
