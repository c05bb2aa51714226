"""The Mamba v1 mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces"), with the parameter names, shapes and initialisation of
``mamba_ssm.modules.mamba_simple.Mamba`` so state_dicts load either way.

    xz = in_proj(h);  x, z = split(xz);  y = selective_ssm(x, z);  out = out_proj(y)

Parameters (d_inner = expand * d_model, R = dt_rank = ceil(d_model / 16), N = d_state):
in_proj [2 d_inner, d_model], conv1d.weight [d_inner, 1, d_conv], conv1d.bias [d_inner],
x_proj [R + 2N, d_inner], dt_proj.weight [d_inner, R], dt_proj.bias [d_inner],
A_log [d_inner, N], D [d_inner], out_proj [d_model, d_inner].
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from flowstudy.errors import ConfigError
from flowstudy.models.ssm.backend import check_backend, resolve_backend
from flowstudy.models.ssm.branch import selective_ssm
from flowstudy.models.ssm.init import SSMParams

__all__ = ["MambaLayer"]


class MambaLayer(nn.Module):
    """Selective SSM mixer: [B, L, d_model] -> [B, L, d_model]."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if min(d_model, d_state, d_conv, expand) < 1:
            raise ConfigError(
                f"d_model, d_state, d_conv and expand must be positive; "
                f"got {d_model}, {d_state}, {d_conv}, {expand}"
            )
        self.backend = check_backend(backend)
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        # Creation order follows mamba_ssm, so one seed gives the same initial weights.
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        p = SSMParams(
            self.d_inner, d_state, d_conv, self.dt_rank, conv_bias,
            dt_min, dt_max, dt_init, dt_scale, dt_init_floor,
        )
        self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D = (
            p.conv1d, p.x_proj, p.dt_proj, p.A_log, p.D
        )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """hidden_states: [B, L, d_model] -> [B, L, d_model]."""
        backend = resolve_backend(self.backend, hidden_states.device)
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)  # [B, L, d_inner] each
        y = selective_ssm(
            x, z, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D, backend
        )
        return self.out_proj(y)
