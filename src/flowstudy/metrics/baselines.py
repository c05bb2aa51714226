"""Baseline samplers that every evaluation reports beside the model.

A flow model is only worth its training if it beats what costs nothing to build:

- ``gaussian``: a Gaussian fitted to the training set (mean and full empirical covariance);
- ``noise``: N(0, I), in standardised space the flow's own source distribution (an
  untrained network integrates to roughly this);
- ``copies``: training rows themselves (perfect fidelity, zero novelty: memorisation);
- ``heldout`` (:data:`REFERENCE_ROW`): the real held-out rows. It is not a sampler: the
  evaluation table fills it with the real half B of each held-out split, so its fidelity
  and novelty are 1.0 exactly by construction and its other metrics are what real data
  scores at the same sample size.

All samplers run in the space of ``train`` (standardised, for the study) and are seeded.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from flowstudy.errors import ConfigError
from flowstudy.metrics.distances import as_matrix, require_rows
from flowstudy.metrics.seeding import derived_rng

REFERENCE_ROW = "heldout"

Sampler = Callable[[Tensor, int, np.random.Generator], Tensor]
"""``(train: [N, D] float64, n, rng) -> [n, D] float64``."""


def _normal(rng: np.random.Generator, shape: tuple[int, int], like: Tensor) -> Tensor:
    return torch.from_numpy(rng.standard_normal(shape)).to(device=like.device, dtype=torch.float64)


def gaussian_baseline(train: Tensor, n: int, rng: np.random.Generator) -> Tensor:
    """n draws from N(mean, cov) of the training rows [N, D] (cov unbiased, 1/(N-1)).

    With N <= D the covariance has rank < D; x = mean + Xc^T w / sqrt(N - 1), w ~ N(0, I_N),
    samples it exactly (Cov[x] = Xc^T Xc / (N - 1)) without forming a D x D root. Otherwise
    x = mean + cov^{1/2} z, z ~ N(0, I_D), with the symmetric eigen root.
    """
    require_rows(train, 2, "train")
    mean = train.mean(0)  # [D]
    xc = train - mean  # [N, D]
    n_rows, dim = train.shape
    if n_rows <= dim:
        w = _normal(rng, (n, n_rows), train)  # [n, N]
        return mean + (w @ xc) / np.sqrt(n_rows - 1)
    cov = xc.T @ xc / (n_rows - 1)  # [D, D]
    evals, evecs = torch.linalg.eigh(cov)
    root = (evecs * evals.clamp_min(0.0).sqrt()[None, :]) @ evecs.T  # [D, D] symmetric
    return mean + _normal(rng, (n, dim), train) @ root


def noise_baseline(train: Tensor, n: int, rng: np.random.Generator) -> Tensor:
    """n draws from N(0, I_D): the source distribution of a flow in standardised space."""
    return _normal(rng, (n, train.shape[1]), train)


def copies_baseline(train: Tensor, n: int, rng: np.random.Generator) -> Tensor:
    """n training rows, without replacement while n <= N; beyond that, whole permutations
    are concatenated so every row repeats floor(n/N) or ceil(n/N) times."""
    n_rows = train.shape[0]
    order = np.concatenate([rng.permutation(n_rows) for _ in range(-(-n // n_rows))])[:n]
    return train[torch.from_numpy(order).to(train.device)]


BASELINES: dict[str, Sampler] = {
    "gaussian": gaussian_baseline,
    "noise": noise_baseline,
    "copies": copies_baseline,
}
"""Baseline name -> sampler. The held-out reference row is added by the evaluation."""


def baseline_samples(
    train: np.ndarray | Tensor,
    n: int,
    seed: int,
    names: list[str] | tuple[str, ...] | None = None,
) -> dict[str, Tensor]:
    """Draw ``n`` rows [n, D] from each baseline (default: all of :data:`BASELINES`).

    Returns tensors in the dtype of ``train`` (float32 or float64) on its device, so copies
    are bit-identical to training rows. Each baseline has its own stream
    (``derived_rng(seed, "baseline", position in BASELINES)``), so choosing a subset changes nothing.
    """
    names = list(BASELINES) if names is None else list(names)
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown}; valid: {', '.join(BASELINES)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be an integer >= 1; got {n!r}")
    x = as_matrix(train, "train")
    dtype = torch.float64 if str(train.dtype) in ("float64", "torch.float64") else torch.float32
    order = list(BASELINES)
    return {
        name: BASELINES[name](x, n, derived_rng(seed, "baseline", order.index(name))).to(dtype) for name in names
    }
