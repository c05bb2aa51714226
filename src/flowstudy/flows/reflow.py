"""Reflow pairs (Liu et al. 2022, "Flow Straight and Fast", rectified flow).

A trained flow's ODE maps noise x0 to a sample x1 = ODE(x0). Training a new flow on these
deterministic pairs with the straight path and the ``paired`` coupling (``create_flow("reflow")``)
straightens its paths, so fewer solver steps are needed. k-rectified flow repeats this with
the newly trained model's velocity.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from flowstudy.errors import ConfigError
from flowstudy.solvers import solve


def generate_reflow_pairs(
    velocity_fn: Callable[[Tensor, Tensor], Tensor],
    n: int,
    dim: int,
    *,
    method: str = "rk4",
    steps: int = 32,
    batch_size: int = 1024,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Integrate ``n`` noise rows from t = 0 to t = 1 with :func:`flowstudy.solvers.solve`.

    Parameters
    ----------
    velocity_fn: ``(x: [B, D], t: [B]) -> [B, D]``; put a network in eval mode first.
    n, dim: number of pairs and their dimension D.
    method, steps: the ODE solver and its steps (rk4 x 32 steps = 128 NFE per row).
    batch_size: rows integrated at once.
    generator: draws the noise, batch by batch; must live on ``device``.

    Returns
    -------
    (x0, x1): [n, D] float32 on ``device``, x1 the ODE image of x0; no autograd graph.
    """
    if n < 1 or dim < 1 or batch_size < 1:
        raise ConfigError(f"n, dim and batch_size must be >= 1; got n={n}, dim={dim}, batch_size={batch_size}")
    sources, images = [], []
    with torch.no_grad():  # pairs are training data: no graph through the teacher
        for start in range(0, n, batch_size):
            rows = min(batch_size, n - start)
            x0 = torch.randn(rows, dim, generator=generator, device=device)  # [b, D]
            result = solve(velocity_fn, x0, 0.0, 1.0, method=method, steps=steps)
            sources.append(x0)
            images.append(result.x.float())
    return torch.cat(sources), torch.cat(images)
