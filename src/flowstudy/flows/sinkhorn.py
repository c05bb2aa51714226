"""Entropic optimal transport between two equal batches, and its rounding to a permutation.

Log-domain Sinkhorn (Cuturi 2013; Peyré & Cuturi 2019, "Computational Optimal Transport",
§4.4) for uniform marginals a = b = 1/B:

    P = argmin_P <P, C> - eps·H(P),   log P_ij = f_i + g_j - C_ij / eps,
    f <- log a - logsumexp_j(g_j - C_ij / eps),   g <- log b - logsumexp_i(f_i - C_ij / eps).

Working with log-potentials keeps small eps stable (no underflow of exp(-C/eps)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinkhorn_log_plan(cost: Tensor, eps: float, max_iters: int = 200, tol: float = 1e-4) -> Tensor:
    """Log of the entropic OT plan between uniform marginals.

    Parameters
    ----------
    cost: [N, M] transport cost.
    eps: entropic regularisation in the units of ``cost`` (absolute, > 0).
    max_iters: cap on the number of (f, g) updates.
    tol: stop when the L1 row-marginal error sum_i |sum_j P_ij - 1/N| falls below it (the
        columns are exact after each g update); checked every 10 iterations.

    Returns
    -------
    [N, M] log P, with P's columns summing to 1/M and rows to 1/N within ``tol``.
    """
    n, m = cost.shape
    scaled = -cost / eps  # [N, M]
    log_a = torch.full((n,), -math.log(n), dtype=cost.dtype, device=cost.device)  # [N]
    log_b = torch.full((m,), -math.log(m), dtype=cost.dtype, device=cost.device)  # [M]
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for it in range(max_iters):
        f = log_a - torch.logsumexp(scaled + g[None, :], dim=1)
        g = log_b - torch.logsumexp(scaled + f[:, None], dim=0)
        if (it + 1) % 10 == 0:  # check rarely: each check syncs with the device
            row_mass = torch.logsumexp(scaled + g[None, :], dim=1) + f  # [N] log row sums
            if (row_mass.exp() - log_a.exp()).abs().sum() < tol:
                break
    return scaled + f[:, None] + g[None, :]


def round_to_permutation(score: Tensor) -> Tensor:
    """Greedy one-to-one rounding of a square score matrix (e.g. a log plan).

    In parallel rounds, every unmatched row proposes to its best unmatched column and each
    column accepts its best proposer (ties to the lowest row index). Every round matches at
    least one pair, so it ends; on a near-permutation plan it takes few rounds. It is a
    heuristic (a 1/2-approximation of the maximum-score matching), not an exact assignment.

    Parameters
    ----------
    score: [B, B] higher is better.

    Returns
    -------
    [B] long ``perm``: row i is matched to column ``perm[i]``; ``perm`` is a permutation.
    """
    b = score.shape[0]
    if score.shape != (b, b):
        raise ValueError(f"score must be square; got {tuple(score.shape)}")
    if torch.isnan(score).any():
        raise ValueError("score contains NaN")
    device = score.device
    perm = torch.full((b,), -1, dtype=torch.long, device=device)  # [B]
    col_free = torch.ones(b, dtype=torch.bool, device=device)  # [B]
    rows = torch.arange(b, device=device)  # unmatched rows
    while rows.numel() > 0:
        sub = score[rows].masked_fill(~col_free[None, :], -math.inf)  # [R, B]
        best_val, best_col = sub.max(dim=1)  # [R]
        top = torch.full((b,), -math.inf, dtype=score.dtype, device=device)
        top = top.scatter_reduce(0, best_col, best_val, reduce="amax")  # [B] best offer per column
        is_top = best_val == top[best_col]  # [R]
        first = torch.full((b,), b, dtype=torch.long, device=device)
        first = first.scatter_reduce(0, best_col[is_top], rows[is_top], reduce="amin")  # tie-break
        won = is_top & (first[best_col] == rows)  # [R]
        perm[rows[won]] = best_col[won]
        col_free[best_col[won]] = False
        rows = rows[~won]
    return perm
