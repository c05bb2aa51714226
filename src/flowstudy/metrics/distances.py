"""Input checks and chunked float64 Euclidean distances shared by the metrics.

Every metric takes [N, D] arrays (numpy or torch, float32/64) that the caller has already
put in one space (standardised with the training statistics). Distances are computed in
float64 from ||a||^2 + ||b||^2 - 2 a.b in row chunks, so memory stays bounded (about
:data:`DEFAULT_BUDGET_BYTES` per block) for N up to ~10K and D = 1024. Nearest-neighbour distances are then
recomputed exactly as ||a_i - b_j|| for the selected pairs: the matmul form is accurate to
~1e-13 in squared distance, enough to find the neighbour, and the exact recomputation makes
a copied row sit at distance 0, not 1e-7.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from flowstudy.errors import ConfigError, DataError

DEFAULT_BUDGET_BYTES = 1 << 26  # 64 MiB per distance block


def as_matrix(x: np.ndarray | Tensor, name: str, device: torch.device | None = None) -> Tensor:
    """Return ``x`` as a float64 [N, D] tensor (on ``device``, else its own / the CPU).

    Raises DataError if ``x`` is not 2-D, is empty or holds non-finite values.
    """
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.asarray(x))
    elif isinstance(x, Tensor):
        t = x.detach()
    else:
        raise DataError(f"{name} must be a numpy array or torch tensor [N, D]; got {type(x).__name__}")
    if t.ndim != 2:
        raise DataError(f"{name} must have shape [N, D]; got {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise DataError(f"{name} is empty: shape {tuple(t.shape)}")
    t = t.to(device=device if device is not None else t.device, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} holds non-finite values (NaN or inf)")
    return t


def as_matrices(**arrays: np.ndarray | Tensor) -> list[Tensor]:
    """Convert several arrays with :func:`as_matrix` onto one device; check equal D.

    The device is the first torch input's device when all torch inputs share it, else the CPU.
    """
    devices = {a.device for a in arrays.values() if isinstance(a, Tensor)}
    device = devices.pop() if len(devices) == 1 else torch.device("cpu")
    out = [as_matrix(a, name, device) for name, a in arrays.items()]
    dims = {name: m.shape[1] for name, m in zip(arrays, out)}
    if len(set(dims.values())) > 1:
        raise DataError(f"all inputs must have the same dimension D; got {dims}")
    return out


def require_rows(x: Tensor, minimum: int, name: str) -> None:
    """Raise DataError unless ``x`` has at least ``minimum`` rows."""
    if x.shape[0] < minimum:
        raise DataError(f"{name} needs at least {minimum} rows; got {x.shape[0]}")


def chunk_rows(width: int, budget_bytes: int | None = None) -> int:
    """Rows per chunk so that a [rows, width] float64 block fits in ``budget_bytes``
    (default :data:`DEFAULT_BUDGET_BYTES`, read at call time)."""
    budget = DEFAULT_BUDGET_BYTES if budget_bytes is None else budget_bytes
    return max(1, budget // (8 * max(1, width)))


def row_chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` rows covering range(n)."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """[Na, D], [Nb, D] -> [Na, Nb] squared Euclidean distances (matmul form, clamped at 0)."""
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)  # [Na, Nb]
    return d2.clamp_min_(0.0)


def _exact_distances(a: Tensor, b: Tensor, idx: Tensor) -> Tensor:
    """||a_i - b_idx[i, j]|| for a: [c, D], idx: [c, k] -> [c, k]."""
    return torch.linalg.vector_norm(a[:, None, :] - b[idx], dim=-1)  # [c, k, D] -> [c, k]


def nearest_distances(
    a: Tensor,
    b: Tensor,
    k: int = 1,
    *,
    exclude_self: bool = False,
    budget_bytes: int | None = None,
) -> Tensor:
    """Distances from each row of ``a`` to its ``k`` nearest rows of ``b``, ascending.

    Parameters
    ----------
    a: [Na, D] float64; b: [Nb, D] float64.
    exclude_self: ``a`` and ``b`` are the same set; row i of ``a`` skips row i of ``b``.

    Returns
    -------
    [Na, k] float64 exact Euclidean distances.
    """
    n_avail = b.shape[0] - int(exclude_self)
    if not 1 <= k <= n_avail:
        raise ConfigError(f"k must be in [1, {n_avail}] for a reference of {b.shape[0]} rows; got {k}")
    out = torch.empty(a.shape[0], k, dtype=torch.float64, device=a.device)
    size = chunk_rows(max(b.shape[0], k * a.shape[1]), budget_bytes)
    for rows in row_chunks(a.shape[0], size):
        d2 = squared_distances(a[rows], b)  # [c, Nb]
        if exclude_self:
            own = torch.arange(rows.start, rows.stop, device=a.device)
            d2[torch.arange(len(own), device=a.device), own] = float("inf")
        idx = d2.topk(k, dim=1, largest=False).indices  # [c, k]
        out[rows] = _exact_distances(a[rows], b, idx).sort(dim=1).values
    return out


def nearest_distances_within(
    a: Tensor, b: Tensor, masks: Tensor, *, budget_bytes: int | None = None
) -> Tensor:
    """Distance from each row of ``a`` to its nearest row of ``b`` among several subsets of ``b``.

    Parameters
    ----------
    a: [Na, D]; b: [Nb, D] float64.
    masks: [K, Nb] bool, row s selects the subset of ``b`` for subset s (each non-empty).

    Returns
    -------
    [K, Na] float64: entry (s, i) = min_{j in subset s} ||a_i - b_j|| (exact).

    One pass over the [Na, Nb] distance matrix serves all K subsets, which is what makes
    averaging over many random half-splits of the held-out set cheap.
    """
    if masks.ndim != 2 or masks.shape[1] != b.shape[0]:
        raise ConfigError(f"masks must have shape [K, {b.shape[0]}]; got {tuple(masks.shape)}")
    if not bool(masks.any(dim=1).all()):
        raise ConfigError("every subset mask must select at least one row")
    masks = masks.to(a.device)
    out = torch.empty(masks.shape[0], a.shape[0], dtype=torch.float64, device=a.device)
    size = chunk_rows(max(b.shape[0], a.shape[1]), budget_bytes)
    for rows in row_chunks(a.shape[0], size):
        d2 = squared_distances(a[rows], b)  # [c, Nb]
        for s, mask in enumerate(masks):
            idx = d2.masked_fill(~mask[None, :], float("inf")).argmin(dim=1, keepdim=True)  # [c, 1]
            out[s, rows] = _exact_distances(a[rows], b, idx)[:, 0]
    return out
