"""A Gaussian-mixture prior with its exact flow-matching velocity, for guidance tests.

For x1 ~ sum_k pi_k N(mu_k, s^2 I), x0 ~ N(0, I) and x_t = t·x1 + (1 - t)·x0, given component k
x_t ~ N(t·mu_k, sig_t^2 I) with sig_t^2 = t^2 s^2 + (1 - t)^2, and
E[x1 - x0 | x_t, k] = mu_k + (t s^2 - (1 - t)) / sig_t^2 · (x_t - t·mu_k); the velocity is the
posterior-weighted mean over k.
"""

from __future__ import annotations

import numpy as np
import torch

from flowstudy.data import EmbeddingSet, Standardizer
from flowstudy.guidance.prior import Prior


class MixtureVelocity(torch.nn.Module):
    def __init__(self, means: torch.Tensor, s: float) -> None:
        super().__init__()
        self.means, self.s = means.double(), s
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # samplers read the device from a parameter

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x64, t64 = x.double(), t.double().reshape(-1, 1, 1)  # [B, 1, 1]
        var = t64**2 * self.s**2 + (1 - t64) ** 2
        diff = x64[:, None, :] - t64 * self.means[None]  # [B, K, D]
        logw = torch.log_softmax(-(diff**2).sum(-1) / (2 * var[:, :, 0]), dim=1)  # [B, K]
        cond = self.means[None] + (t64 * self.s**2 - (1 - t64)) / var * diff  # [B, K, D]
        return (logw.exp()[..., None] * cond).sum(1).to(x.dtype)

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x1) [B] up to the shared constant, under the mixture (equal weights)."""
        d2 = ((x.double()[:, None, :] - self.means[None]) ** 2).sum(-1)
        return torch.logsumexp(-d2 / (2 * self.s**2), dim=1)


def toy_prior(dim: int = 2, s: float = 0.3, n_train: int = 200, seed: int = 0) -> tuple[Prior, MixtureVelocity]:
    """A prior whose standardised space is the mixture's own (identity standardiser)."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.zeros(3, dim, dtype=torch.float64)
    means[0, 0], means[1, 0], means[2, 1] = 2.0, -2.0, 2.0
    velocity = MixtureVelocity(means, s)
    comp = torch.randint(3, (n_train,), generator=gen)
    train = (means[comp] + s * torch.randn(n_train, dim, generator=gen, dtype=torch.float64)).float().numpy()
    standardizer = Standardizer(torch.zeros(dim), torch.ones(dim), 0.0, torch.ones(dim))
    texts = [f"row {i} of component {int(c)}" for i, c in enumerate(comp)]
    return Prior("toy", velocity, standardizer, EmbeddingSet(train, texts, "toy")), velocity


def toy_score(x: np.ndarray) -> np.ndarray:
    """Higher toward (2.5, 0.5, ...): the right mode's upper edge."""
    target = np.zeros(x.shape[1])
    target[0], target[1] = 2.5, 0.5
    return -np.sum((np.asarray(x, dtype=np.float64) - target) ** 2, axis=1)
