"""Density and coverage (Naeem et al., "Reliable Fidelity and Diversity Metrics for
Generative Models", ICML 2020).

With real rows X [N, D], samples Y [M, D] and r_i the distance from X_i to its k-th
nearest other real row:

    density  = 1/(k M) sum_j sum_i 1[||Y_j - X_i|| <= r_i]
    coverage = 1/N sum_i 1[min_j ||Y_j - X_i|| <= r_i]

For samples from the real distribution E[density] = 1 and coverage -> 1 - 2^-k when M = N
(about 0.97 for k = 5). Density above 1 means samples crowd the dense regions of the real
data; coverage falls when samples miss part of it (mode collapse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flowstudy.errors import ConfigError
from flowstudy.metrics.distances import (
    as_matrices,
    chunk_rows,
    nearest_distances,
    require_rows,
    row_chunks,
    squared_distances,
)


@dataclass(frozen=True)
class DensityCoverage:
    """Density (1 = like real data) and coverage (fraction of real rows whose ball holds a sample)."""

    density: float
    coverage: float
    k: int
    n_real: int
    n_samples: int


def density_coverage(samples: np.ndarray | Tensor, real: np.ndarray | Tensor, *, k: int = 5) -> DensityCoverage:
    """Density and coverage of ``samples`` [M, D] with respect to ``real`` [N, D] (N > k)."""
    y, x = as_matrices(samples=samples, real=real)
    if k < 1:
        raise ConfigError(f"k must be >= 1; got {k}")
    require_rows(x, k + 1, "real")
    radii = nearest_distances(x, x, k, exclude_self=True)[:, -1]  # [N] k-th neighbour distance
    radii2 = radii**2
    inside_count = torch.zeros((), dtype=torch.float64, device=x.device)
    nearest2 = torch.full((x.shape[0],), float("inf"), dtype=torch.float64, device=x.device)  # [N]
    for rows in row_chunks(y.shape[0], chunk_rows(x.shape[0])):
        d2 = squared_distances(y[rows], x)  # [c, N]
        inside_count += (d2 <= radii2[None, :]).sum()
        nearest2 = torch.minimum(nearest2, d2.min(dim=0).values)
    return DensityCoverage(
        density=float(inside_count) / (k * y.shape[0]),
        coverage=float((nearest2 <= radii2).double().mean()),
        k=k,
        n_real=x.shape[0],
        n_samples=y.shape[0],
    )
