"""Parameters of one selective-SSM branch, initialised exactly as mamba_ssm's Mamba.

- dt_proj.weight ~ U(-s, s), s = dt_scale * dt_rank^-1/2 ("random"), or = s ("constant");
- dt_proj.bias = softplus^-1(dt), dt = exp(U(log dt_min, log dt_max)) clamped at
  dt_init_floor, so softplus(bias) starts in [dt_min, dt_max] (Gu & Dao 2023, Sec. 3.6);
- A_log = log([1, ..., N]) for every channel: A = -exp(A_log) = -(n + 1), the "S4D-real"
  initialisation (Gu et al. 2022, "On the Parameterization and Initialization of
  Diagonal State Space Models"); A_log and D stay fp32 and skip weight decay.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SSMParams", "init_dt_proj", "inverse_softplus", "s4d_real_A_log"]


def inverse_softplus(y: Tensor) -> Tensor:
    """softplus^-1(y) = y + log(1 - exp(-y)), for y > 0."""
    return y + torch.log(-torch.expm1(-y))


def init_dt_proj(
    dt_proj: nn.Linear,
    dt_min: float,
    dt_max: float,
    dt_init: str,
    dt_scale: float,
    dt_init_floor: float,
) -> None:
    """Initialise the dt projection in place (see module docstring)."""
    dt_rank = dt_proj.in_features
    std = dt_rank**-0.5 * dt_scale
    with torch.no_grad():
        if dt_init == "constant":
            dt_proj.weight.fill_(std)
        elif dt_init == "random":
            dt_proj.weight.uniform_(-std, std)
        else:
            raise ValueError(f"unknown dt_init {dt_init!r}; valid: 'random', 'constant'")
        log_dt = torch.rand(dt_proj.out_features) * (math.log(dt_max) - math.log(dt_min))
        dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=dt_init_floor)
        dt_proj.bias.copy_(inverse_softplus(dt))
    dt_proj.bias._no_reinit = True  # same marker as mamba_ssm: keep this bias out of re-inits


def s4d_real_A_log(d_inner: int, d_state: int) -> Tensor:
    """log(A) with A[d, n] = n + 1: [d_inner, d_state], fp32."""
    A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)  # [d_inner, N]
    return torch.log(A)


class SSMParams:
    """Builds the per-branch modules: conv1d, x_proj, dt_proj, A_log, D."""

    def __init__(
        self,
        d_inner: int,
        d_state: int,
        d_conv: int,
        dt_rank: int,
        conv_bias: bool = True,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
    ) -> None:
        self.conv1d = nn.Conv1d(  # depthwise; causal by keeping the first L outputs
            d_inner, d_inner, kernel_size=d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        init_dt_proj(self.dt_proj, dt_min, dt_max, dt_init, dt_scale, dt_init_floor)
        self.A_log = nn.Parameter(s4d_real_A_log(d_inner, d_state))  # keep fp32
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(d_inner))  # skip connection, keep fp32
        self.D._no_weight_decay = True
