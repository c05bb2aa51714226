"""ODE solvers for sampling and inverting flows: dx/dt = v(x, t).

Time runs from noise (t = 0) to data (t = 1); the same code integrates backwards when
``t_start > t_end`` (the step h is then negative). Fixed-step methods use a uniform grid
of ``steps + 1`` times; ``dopri5`` is the adaptive Dormand–Prince 5(4) method of
torchdiffeq (optional extra ``flowstudy[ode]``).

NFE (number of function evaluations) counts calls of the velocity network, separately
from the number of steps: per step euler 1, midpoint 2, heun 2, rk4 4. It is what
sampling costs, and the fair axis on which to compare solvers.

Precision: the state is kept in at least float32, whatever the network returns (bf16
inside networks on CUDA); every velocity is cast to the state's dtype before it is
accumulated. A float64 ``x_init`` stays float64, which lets tests measure orders of
accuracy far below float32 round-off.

Gradients are not switched off here: callers wrap sampling in ``torch.no_grad()``
themselves, while guided sampling differentiates through the velocity.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from torch import Tensor

from flowstudy.errors import ConfigError

VelocityFn = Callable[[Tensor, Tensor], Tensor]
"""``velocity_fn(x: [B, D], t: [B]) -> [B, D]``."""


@dataclass(frozen=True)
class SolveResult:
    """Outcome of :func:`solve`.

    Attributes
    ----------
    x: [B, D] state at ``t_end`` (float32, or float64 for a float64 ``x_init``).
    nfe: number of velocity evaluations.
    steps: number of fixed steps taken; for ``dopri5``, the number of intervals of the
        output grid (its own step count is adaptive and shows in ``nfe``).
    trajectory: [steps + 1, B, D] states at ``times`` (``trajectory[0]`` is ``x_init``), or
        None unless ``return_trajectory``.
    times: [steps + 1] the grid from ``t_start`` to ``t_end``, or None unless
        ``return_trajectory``.
    """

    x: Tensor
    nfe: int
    steps: int
    trajectory: Tensor | None = None
    times: Tensor | None = None


class _CountingField:
    """Wraps ``velocity_fn``: counts calls, passes t as [B], returns the state's dtype."""

    def __init__(self, velocity_fn: VelocityFn, dtype: torch.dtype) -> None:
        self.velocity_fn = velocity_fn
        self.dtype = dtype
        self.nfe = 0

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        if isinstance(t, Tensor):  # torchdiffeq passes a 0-d tensor
            t_vec = t.to(device=x.device, dtype=self.dtype).expand(x.shape[0])  # [B]
        else:  # a fill, not a host-to-device copy: no sync per evaluation
            t_vec = torch.full((x.shape[0],), t, dtype=self.dtype, device=x.device)  # [B]
        v = self.velocity_fn(x, t_vec)
        self.nfe += 1
        if v.shape != x.shape:
            raise ValueError(f"velocity_fn must return the state's shape {tuple(x.shape)}; got {tuple(v.shape)}")
        # accumulate in the state's precision, whatever the network computed in
        return v.to(self.dtype)


StepFn = Callable[[_CountingField, Tensor, float, float], Tensor]


def _euler_step(f: _CountingField, x: Tensor, t: float, h: float) -> Tensor:
    """x + h·v(x, t): first order, 1 NFE."""
    return x + h * f(x, t)


def _midpoint_step(f: _CountingField, x: Tensor, t: float, h: float) -> Tensor:
    """Explicit midpoint, x + h·v(x + h/2·k1, t + h/2): second order, 2 NFE."""
    k1 = f(x, t)
    return x + h * f(x + 0.5 * h * k1, t + 0.5 * h)


def _heun_step(f: _CountingField, x: Tensor, t: float, h: float) -> Tensor:
    """Heun (explicit trapezoid), x + h/2·(k1 + k2) with k2 at the Euler predictor: 2nd order, 2 NFE."""
    k1 = f(x, t)
    k2 = f(x + h * k1, t + h)
    return x + 0.5 * h * (k1 + k2)


def _rk4_step(f: _CountingField, x: Tensor, t: float, h: float) -> Tensor:
    """Classical Runge–Kutta, x + h/6·(k1 + 2k2 + 2k3 + k4): fourth order, 4 NFE."""
    k1 = f(x, t)
    k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = f(x + h * k3, t + h)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def solve(
    velocity_fn: VelocityFn,
    x_init: Tensor,
    t_start: float = 0.0,
    t_end: float = 1.0,
    method: str = "euler",
    steps: int = 50,
    *,
    return_trajectory: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> SolveResult:
    """Integrate dx/dt = velocity_fn(x, t) from ``t_start`` to ``t_end``.

    Parameters
    ----------
    velocity_fn: ``(x: [B, D], t: [B]) -> [B, D]``, any dtype (cast to the state's).
    x_init: [B, D] state at ``t_start``; noise for sampling (0 -> 1), data for inversion (1 -> 0).
    method: one of :data:`SOLVERS`.
    steps: fixed steps (uniform grid), or for ``dopri5`` the intervals of the output grid.
    return_trajectory: also return the states at every grid time.
    rtol, atol: tolerances of ``dopri5`` (ignored by fixed-step methods).

    Deterministic: no randomness is drawn.
    """
    if method not in SOLVERS:
        raise ConfigError(f"unknown ODE solver {method!r}; valid: {', '.join(SOLVERS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1; got {steps!r}")
    if not isinstance(x_init, Tensor) or x_init.ndim != 2:
        shape = tuple(x_init.shape) if isinstance(x_init, Tensor) else type(x_init).__name__
        raise ValueError(f"x_init must be a 2-D tensor [B, D]; got {shape}")
    if float(t_start) == float(t_end):
        raise ConfigError(f"t_start and t_end must differ; both are {t_start}")

    dtype = torch.promote_types(x_init.dtype, torch.float32)  # fp32 state at least
    field = _CountingField(velocity_fn, dtype)
    x = x_init.to(dtype)
    times = torch.linspace(float(t_start), float(t_end), steps + 1, dtype=torch.float64)  # [steps + 1]
    states = SOLVERS[method](field, x, times, keep_all=return_trajectory, rtol=rtol, atol=atol)
    trajectory = torch.stack(states) if return_trajectory else None  # [steps + 1, B, D]
    return SolveResult(
        x=states[-1],
        nfe=field.nfe,
        steps=steps,
        trajectory=trajectory,
        times=times.to(device=x.device, dtype=dtype) if return_trajectory else None,
    )


def _solve_fixed(
    step: StepFn, field: _CountingField, x: Tensor, times: Tensor, *, keep_all: bool, **_tolerances: float
) -> list[Tensor]:
    """Apply ``step`` over consecutive grid times; returns all states or just the last."""
    states = [x]
    grid = times.tolist()  # python floats: t and h enter the arithmetic in the state's dtype
    for t0, t1 in zip(grid[:-1], grid[1:]):
        x = step(field, x, t0, t1 - t0)
        if keep_all:
            states.append(x)
    return states if keep_all else [x]


def _solve_dopri5(
    field: _CountingField, x: Tensor, times: Tensor, *, keep_all: bool, rtol: float, atol: float
) -> list[Tensor]:
    """Adaptive Dormand–Prince 5(4) via torchdiffeq; output times are interpolated (no extra NFE)."""
    try:
        from torchdiffeq import odeint
    except ImportError as err:  # optional dependency
        raise ImportError(
            "method='dopri5' needs torchdiffeq: pip install 'flowstudy[ode]'"
        ) from err
    out_times = times if keep_all else times[[0, -1]]
    out_times = out_times.to(device=x.device, dtype=x.dtype)
    states = odeint(lambda t, y: field(y, t), x, out_times, rtol=rtol, atol=atol, method="dopri5")  # [T, B, D]
    return list(states.unbind(0)) if keep_all else [states[-1]]


Integrator = Callable[..., "list[Tensor]"]

SOLVERS: dict[str, Integrator] = {
    "euler": partial(_solve_fixed, _euler_step),
    "midpoint": partial(_solve_fixed, _midpoint_step),
    "heun": partial(_solve_fixed, _heun_step),
    "rk4": partial(_solve_fixed, _rk4_step),
    "dopri5": _solve_dopri5,
}
"""Method name -> integrator ``(field, x, times, *, keep_all, rtol, atol) -> states``."""


def list_solvers() -> list[str]:
    """Names accepted by :func:`solve`'s ``method``."""
    return list(SOLVERS)
