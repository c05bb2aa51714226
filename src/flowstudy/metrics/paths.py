"""Flow-specific metrics: path straightness, solver error versus NFE, reconstruction.

All take a ``velocity_fn(x: [B, D], t: [B]) -> [B, D]`` (the network's calling convention)
and integrate with :func:`flowstudy.solvers.solve`; none needs gradients, so each runs
under ``torch.no_grad()``. Time runs from noise (t = 0) to data (t = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from flowstudy.errors import ConfigError, DataError

VelocityFn = Callable[[Tensor, Tensor], Tensor]


def _solve(*args, **kwargs):
    from flowstudy.solvers import solve  # imported at use: solvers import nothing from metrics

    return solve(*args, **kwargs)


def _check_state(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"{name} must be a non-empty tensor [B, D]; got {shape}")


@dataclass(frozen=True)
class Straightness:
    """S = E_x0 int_0^1 ||v(x_t, t) - (x_1 - x_0)||^2 dt along solved paths (0 = straight).

    ``relative`` divides by E||x_1 - x_0||^2, so fields of different scale compare.
    ``per_sample``: [B] the integral for each path.
    """

    value: float
    relative: float
    per_sample: Tensor
    method: str
    steps: int


def straightness(
    velocity_fn: VelocityFn,
    x0: Tensor,
    *,
    method: str = "euler",
    steps: int = 100,
    batch_size: int = 256,
) -> Straightness:
    """Straightness of the paths from noise ``x0`` [B, D] (Liu et al., "Flow Straight and Fast",
    ICLR 2023, eq. for S(Z)).

    The paths are solved on a uniform grid of ``steps`` steps; v is evaluated at every grid
    state (steps + 1 extra NFE) and ||v - (x_1 - x_0)||^2 integrated with the trapezoid rule.
    A constant field gives 0; any curvature gives > 0. Rows are processed ``batch_size`` at a
    time, bounding the trajectory's memory to [steps + 1, batch_size, D].
    """
    _check_state(x0, "x0")
    per_sample, disp2 = [], []
    with torch.no_grad():
        for chunk in x0.split(batch_size):
            res = _solve(velocity_fn, chunk, 0.0, 1.0, method, steps, return_trajectory=True)
            traj, times = res.trajectory, res.times  # [T + 1, b, D], [T + 1]
            disp = (traj[-1] - traj[0]).double()  # [b, D]
            dev = torch.stack(
                [
                    ((velocity_fn(x, t.expand(x.shape[0])).double() - disp) ** 2).sum(-1)  # [b]
                    for x, t in zip(traj, times)
                ]
            )  # [T + 1, b]
            per_sample.append(torch.trapezoid(dev, x=times.double(), dim=0))  # [b]
            disp2.append((disp**2).sum(-1))
    values = torch.cat(per_sample)  # [B]
    return Straightness(
        value=float(values.mean()),
        relative=float(values.mean() / torch.cat(disp2).mean().clamp_min(1e-300)),
        per_sample=values.cpu(),
        method=method,
        steps=steps,
    )


@dataclass(frozen=True)
class NFECurve:
    """Final-state RMSE of ``method`` at several step counts against a reference solution."""

    method: str
    steps: tuple[int, ...]
    nfe: tuple[int, ...]
    rmse: tuple[float, ...]
    reference_method: str
    reference_steps: int
    reference_nfe: int


def error_vs_nfe(
    velocity_fn: VelocityFn,
    x_init: Tensor,
    *,
    method: str = "euler",
    steps: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    reference_method: str = "rk4",
    reference_steps: int = 256,
) -> NFECurve:
    """Error of ``method`` at each step count: RMSE = sqrt(mean_{i,d} (x_i,d - x*_i,d)^2) of the
    state at t = 1 against x*, the ``reference_method`` solution with ``reference_steps``.

    x_init: [B, D] noise. The curve is what sampling at a given cost gives up in accuracy.
    """
    _check_state(x_init, "x_init")
    if not steps:
        raise ConfigError("steps must list at least one step count")
    with torch.no_grad():
        ref = _solve(velocity_fn, x_init, 0.0, 1.0, reference_method, reference_steps)
        runs = [_solve(velocity_fn, x_init, 0.0, 1.0, method, int(n)) for n in steps]
    target = ref.x.double()
    return NFECurve(
        method=method,
        steps=tuple(int(n) for n in steps),
        nfe=tuple(r.nfe for r in runs),
        rmse=tuple(float(((r.x.double() - target) ** 2).mean().sqrt()) for r in runs),
        reference_method=reference_method,
        reference_steps=reference_steps,
        reference_nfe=ref.nfe,
    )


def row_errors(x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row MSE (mean over D) and cosine similarity of ``x_hat`` to ``x``, both [N, D] -> [N]."""
    if x.shape != x_hat.shape or x.ndim != 2:
        raise DataError(f"x and x_hat must have the same shape [N, D]; got {tuple(x.shape)}, {tuple(x_hat.shape)}")
    a, b = x.double(), x_hat.double()
    mse = ((a - b) ** 2).mean(-1)  # [N]
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)  # [N]
    return mse, cosine


@dataclass(frozen=True)
class Reconstruction:
    """Data -> noise -> data round trip. ``noise``, ``reconstruction``: [N, D] in the caller's
    space; ``mse``, ``cosine``: [N] per row; ``nfe``: evaluations of both legs together."""

    noise: Tensor
    reconstruction: Tensor
    mse: Tensor
    cosine: Tensor
    mean_mse: float
    mean_cosine: float
    nfe: int


def reconstruction_error(
    velocity_fn: VelocityFn, x1: Tensor, *, method: str = "rk4", steps: int = 100
) -> Reconstruction:
    """Invert data ``x1`` [N, D] to noise (t: 1 -> 0) and integrate back (0 -> 1).

    The round trip isolates solver and field error from sample quality: an exactly invertible
    flow integrated accurately returns ``x1``. Errors are in the space given; to report them
    in the original space, un-standardise ``reconstruction`` and call :func:`row_errors`.
    """
    _check_state(x1, "x1")
    with torch.no_grad():
        back = _solve(velocity_fn, x1, 1.0, 0.0, method, steps)
        forth = _solve(velocity_fn, back.x, 0.0, 1.0, method, steps)
    mse, cosine = row_errors(x1, forth.x)
    return Reconstruction(
        noise=back.x,
        reconstruction=forth.x,
        mse=mse.cpu(),
        cosine=cosine.cpu(),
        mean_mse=float(mse.mean()),
        mean_cosine=float(cosine.mean()),
        nfe=back.nfe + forth.nfe,
    )
