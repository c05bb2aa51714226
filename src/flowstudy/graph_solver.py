"""Fixed-step sampling replayed as one CUDA graph: the fast path beside :func:`flowstudy.solvers.solve`.

A fixed-step solve is the same sequence of kernels for every input of one batch size: ``steps``
network evaluations (times and step sizes are constants of the grid) and the state updates.
:class:`GraphSolver` records :func:`~flowstudy.solvers.solve` once for a batch size, method and
step count, and replays it for each new batch of initial states — one launch instead of
hundreds per network evaluation, which is what bounds these small networks on a GPU.

The arithmetic is :func:`solve`'s own (it is what the graph recorded), so results equal the
reference solver's: exactly on the CPU, where no graph is captured, and up to the GPU's
run-to-run rounding on CUDA. The state stays in ``dtype`` (float32 unless asked); ``velocity_fn``
decides the network's precision (``flowstudy.sampling`` wraps it in bf16 autocast when asked).

    solver = GraphSolver(velocity, batch=4096, dim=1024, device="cuda", method="euler", steps=50)
    x1 = solver(torch.randn(4096, 1024, device="cuda"))

``compile="default"`` (or ``"max-autotune-no-cudagraphs"``) runs the velocity through
``torch.compile`` first (static shapes), so that its elementwise work on wide rows (activations,
the skip gate, bf16 casts) is fused into fewer kernels before the solve is recorded. Compiling
happens at the first evaluation (the capture's warm-up): tens of seconds. Modes that bring their
own CUDA graphs ("reduce-overhead", "max-autotune") would nest graphs and are refused.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowstudy.cudagraphs import capture
from flowstudy.errors import ConfigError
from flowstudy.solvers import VelocityFn, solve

FIXED_STEP_METHODS = ("euler", "midpoint", "heun", "rk4")
"""Methods with a fixed grid (dopri5's adaptive steps cannot be recorded)."""

COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes for the velocity that leave CUDA graphs to this solver."""


class GraphSolver:
    """``solve(velocity_fn, x, t_start, t_end, method, steps).x`` for [batch, dim] inputs, replayed.

    ``capture=None`` captures on CUDA and runs :func:`solve` directly elsewhere; ``True`` on a
    non-CUDA device is an error. ``compile``: a mode of :data:`COMPILE_MODES` to compile the
    velocity with, or None. Calls return a fresh [batch, dim] tensor of ``dtype``; ``nfe`` is the
    number of network evaluations per call.
    """

    def __init__(
        self,
        velocity_fn: VelocityFn,
        batch: int,
        dim: int,
        *,
        device: str | torch.device,
        method: str = "euler",
        steps: int = 50,
        t_start: float = 0.0,
        t_end: float = 1.0,
        capture: bool | None = None,
        compile: str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        if method not in FIXED_STEP_METHODS:
            raise ConfigError(f"graph sampling needs a fixed-step method ({', '.join(FIXED_STEP_METHODS)}); got {method!r}")
        if compile is not None and compile not in COMPILE_MODES:
            raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)} (or None); got {compile!r}")
        if compile is not None:
            velocity_fn = torch.compile(velocity_fn, mode=compile, dynamic=False)
        self.velocity_fn, self.method, self.steps = velocity_fn, method, steps
        self.t_start, self.t_end = float(t_start), float(t_end)
        self.device, self.dtype = torch.device(device), dtype
        self.shape = (int(batch), int(dim))
        capture = self.device.type == "cuda" if capture is None else capture
        if capture and self.device.type != "cuda":
            raise ConfigError(f"CUDA graphs need a CUDA device; got {self.device}")
        self.graph = self._capture() if capture else None

    def _solve(self, x: Tensor) -> Tensor:
        result = solve(self.velocity_fn, x, self.t_start, self.t_end, method=self.method, steps=self.steps)
        self.nfe = result.nfe  # network evaluations per call
        return result.x

    @torch.no_grad()
    def _capture(self) -> torch.cuda.CUDAGraph:
        # [B, D] static input. Not a random draw: torch's default CUDA generator is in capture mode while
        # any thread records a graph, and a draw from it in another thread fails (study threads).
        self.x_in = torch.zeros(self.shape, device=self.device, dtype=self.dtype)
        t0 = torch.zeros(self.shape[0], device=self.device, dtype=self.dtype)
        _, graph, self.x_out = capture(  # one evaluation first: library handles, lazy modules
            self.device, lambda: self._solve(self.x_in), warm_up=lambda: self.velocity_fn(self.x_in, t0)
        )  # x_out: [B, D] static output
        return graph

    @torch.no_grad()
    def __call__(self, x_init: Tensor) -> Tensor:
        """x_init: [batch, dim] states at t_start -> [batch, dim] states (``dtype``) at t_end."""
        if tuple(x_init.shape) != self.shape:
            raise ValueError(f"x_init must have shape {list(self.shape)} (the captured batch); got {list(x_init.shape)}")
        if self.graph is None:
            return self._solve(x_init.to(self.device, self.dtype))
        self.x_in.copy_(x_init)
        self.graph.replay()
        return self.x_out.clone()


__all__ = ["COMPILE_MODES", "FIXED_STEP_METHODS", "GraphSolver"]
