"""A bidirectional Mamba mixer that merges both directions inside the layer, as Vision
Mamba does (Zhu et al. 2024, "Vision Mamba: Efficient Visual Representation Learning
with Bidirectional State Space Model", the "v2" block).

One in_proj and one out_proj; a forward SSM branch reads the sequence as is, a backward
branch (its own conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b; Vim's names) reads it
reversed, and the two gated outputs are summed:

    x, z = split(in_proj(h))
    y = ssm_f(x, z) + flip(ssm_b(flip(x), flip(z)))
    out = out_proj(y)
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from flowstudy.errors import ConfigError
from flowstudy.models.ssm.backend import check_backend, resolve_backend
from flowstudy.models.ssm.branch import selective_ssm
from flowstudy.models.ssm.init import SSMParams

__all__ = ["BiMambaLayer"]


class BiMambaLayer(nn.Module):
    """Merged bidirectional selective SSM mixer: [B, L, d_model] -> [B, L, d_model]."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
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
        self.d_model, self.d_state = d_model, d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        f = SSMParams(self.d_inner, d_state, d_conv, self.dt_rank, conv_bias)
        self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D = (
            f.conv1d, f.x_proj, f.dt_proj, f.A_log, f.D
        )
        b = SSMParams(self.d_inner, d_state, d_conv, self.dt_rank, conv_bias)
        self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b = (
            b.conv1d, b.x_proj, b.dt_proj, b.A_log, b.D
        )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """hidden_states: [B, L, d_model] -> [B, L, d_model]."""
        backend = resolve_backend(self.backend, hidden_states.device)
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)  # [B, L, d_inner] each
        y_f = selective_ssm(
            x, z, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D, backend
        )
        y_b = selective_ssm(
            x.flip(1), z.flip(1), self.conv1d_b, self.x_proj_b, self.dt_proj_b,
            self.A_b_log, self.D_b, backend,
        ).flip(1)  # back in forward order
        return self.out_proj(y_f + y_b)
