"""The top-k bound of a cosine objective: what a model confined to k principal directions can reach.

For a target t [D] and the training rows' mean m and top-k principal directions P_k (centred PCA,
original space), the best estimate of t that knows only t's k coordinates there is

    t_k = m + P_k^T P_k (t - m),     bound_k(t) = cos(t_k, t).

A surrogate that sees k whitened components cannot, through them alone, point closer to the
target than this; on the cosine benchmark's ten held-out targets it is 0.80 (k = 32), 0.85 (64),
0.88 (96) and 0.90 (128). It is the physical limit a result is read against, not an upper bound on
a method that can move in every direction (a real row beside the target may score more).
"""

from __future__ import annotations

import numpy as np

from flowstudy.errors import DataError
from flowstudy.guidance.objectives import target_rows

KS = (32, 64, 96, 128)


def topk_cosine_bound(train: np.ndarray, targets: np.ndarray, ks: tuple[int, ...] = KS) -> dict[int, np.ndarray]:
    """k -> bound_k of each target [m] (module docstring); train [N, D], targets [m, D], original space.
    k = 0 is the mean alone."""
    x, t = np.asarray(train, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if x.ndim != 2 or t.ndim != 2 or t.shape[1] != x.shape[1]:
        raise DataError(f"top-k bound needs train [N, D] and targets [m, D]; got {x.shape} and {t.shape}")
    if any(not 0 <= k <= min(x.shape) for k in ks):
        raise DataError(f"top-k bound: every k must lie in [0, {min(x.shape)}]; got {list(ks)}")
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    out = {}
    for k in ks:
        est = mean + (t - mean) @ vt[:k].T @ vt[:k]  # [m, D]
        out[k] = (est * t).sum(1) / (np.linalg.norm(est, axis=1) * np.linalg.norm(t, axis=1))
    return out


def objective_bounds(train: np.ndarray, specs: list[str], ks: tuple[int, ...] = KS) -> dict[str, dict[int, float]]:
    """spec -> k -> bound for every ``cosine:`` spec of ``specs`` (others are skipped)."""
    out = {}
    for spec in specs:
        rows = target_rows(spec)
        if rows is not None and len(rows) == 1:
            out[spec] = {k: float(v[0]) for k, v in topk_cosine_bound(train, rows, ks).items()}
    return out


__all__ = ["KS", "objective_bounds", "topk_cosine_bound"]
