"""Squared maximum mean discrepancy with RBF kernels, unbiased U-statistic.

Gretton et al., "A Kernel Two-Sample Test", JMLR 2012, eq. (3). For X [m, D], Y [n, D] and
k(x, y) = exp(-||x - y||^2 / (2 sigma^2)):

    MMD_u^2 = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(mn) sum_{i, j} k(x_i, y_j)

Its expectation is exactly MMD^2 (0 when the distributions are equal), so single draws
can be negative. Bandwidths default to the median heuristic (median pairwise distance of
the pooled rows, on a seeded subsample of at most ``max_median_rows`` rows) times
{0.5, 1, 2}; the sum over bandwidths is the MMD^2 of the sum kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from flowstudy.errors import ConfigError
from flowstudy.metrics.distances import as_matrices, chunk_rows, require_rows, row_chunks, squared_distances
from flowstudy.metrics.seeding import derived_rng

DEFAULT_SCALES = (0.5, 1.0, 2.0)


@dataclass(frozen=True)
class MMDResult:
    """Unbiased MMD^2 per bandwidth, their sum and mean."""

    mmd2: tuple[float, ...]
    bandwidths: tuple[float, ...]
    total: float
    mean: float


def median_heuristic(
    x: np.ndarray | Tensor, y: np.ndarray | Tensor | None = None, *, seed: int = 0, max_rows: int = 2000
) -> float:
    """Median pairwise Euclidean distance of the pooled rows of ``x`` [m, D] and ``y`` [n, D].

    ``y`` None: of ``x`` alone (a bandwidth that does not depend on the samples, so that
    several sample sets are compared with the same kernel). Uses a seeded subsample of at
    most ``max_rows`` pooled rows; distinct pairs only.
    """
    arrays = {"x": x} if y is None else {"x": x, "y": y}
    pooled = torch.cat(as_matrices(**arrays))  # [m + n, D]
    require_rows(pooled, 2, "pooled rows")
    if pooled.shape[0] > max_rows:
        idx = derived_rng(seed, "median-heuristic").choice(pooled.shape[0], max_rows, replace=False)
        pooled = pooled[torch.from_numpy(idx).to(pooled.device)]
    d2 = squared_distances(pooled, pooled)  # [p, p]
    iu = torch.triu_indices(d2.shape[0], d2.shape[0], offset=1, device=d2.device)
    return float(d2[iu[0], iu[1]].sqrt().median())


def _kernel_sums(a: Tensor, b: Tensor, sigmas: Tensor, *, same: bool) -> Tensor:
    """sum_{i, j} k_sigma(a_i, b_j) for each sigma -> [S]; with ``same``, i != j only."""
    total = torch.zeros(len(sigmas), dtype=torch.float64, device=a.device)
    gamma = 1.0 / (2.0 * sigmas**2)  # [S]
    for rows in row_chunks(a.shape[0], chunk_rows(b.shape[0] * len(sigmas))):
        d2 = squared_distances(a[rows], b)  # [c, Nb]
        k = torch.exp(-gamma[:, None, None] * d2[None])  # [S, c, Nb]
        if same:
            own = torch.arange(rows.start, rows.stop, device=a.device)
            k[:, torch.arange(len(own), device=a.device), own] = 0.0  # drop the i == j terms
        total += k.sum(dim=(1, 2))
    return total


def mmd_rbf(
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    *,
    bandwidths: Sequence[float] | None = None,
    scales: Sequence[float] = DEFAULT_SCALES,
    seed: int = 0,
    max_median_rows: int = 2000,
) -> MMDResult:
    """Unbiased squared MMD between ``x`` [m, D] and ``y`` [n, D] (m, n >= 2), RBF kernels.

    Parameters
    ----------
    bandwidths: kernel widths sigma; default median heuristic times ``scales``.
    seed: subsample for the median heuristic.
    """
    a, b = as_matrices(x=x, y=y)
    require_rows(a, 2, "x")
    require_rows(b, 2, "y")
    if bandwidths is None:
        med = median_heuristic(a, b, seed=seed, max_rows=max_median_rows)
        bandwidths = [med * s for s in scales]
    if len(bandwidths) == 0 or min(bandwidths) <= 0:
        raise ConfigError(f"bandwidths must be a non-empty list of positive numbers; got {list(bandwidths)}")
    sigmas = torch.tensor([float(s) for s in bandwidths], dtype=torch.float64, device=a.device)  # [S]
    m, n = a.shape[0], b.shape[0]
    kxx = _kernel_sums(a, a, sigmas, same=True) / (m * (m - 1))
    kyy = _kernel_sums(b, b, sigmas, same=True) / (n * (n - 1))
    kxy = _kernel_sums(a, b, sigmas, same=False) / (m * n)
    per = (kxx + kyy - 2.0 * kxy).cpu().tolist()
    return MMDResult(
        mmd2=tuple(per),
        bandwidths=tuple(float(s) for s in sigmas.cpu().tolist()),
        total=float(sum(per)),
        mean=float(np.mean(per)),
    )
