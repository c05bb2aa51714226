"""U-Net-shaped MLP velocity network with FiLM time conditioning.

Widths go down then up (e.g. 512-256-128 | 128 | 256-512-512 for widths (512, 256, 128));
each decoder block reads the previous output concatenated with the encoder output of
the mirrored level (the U-Net skip, Ronneberger et al. 2015). Every block is

    h = SiLU(FiLM(LN(W [inputs]), c)),   FiLM(h, c) = h * (1 + gamma(c)) + beta(c)

(Perez et al. 2018, "FiLM: Visual Reasoning with a General Conditioning Layer"), with
(gamma, beta) a Linear of the time condition c. The output Linear is zero-initialised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowstudy.errors import ConfigError
from flowstudy.models.inputs import prepare_inputs
from flowstudy.models.mlp import TimeMLP, zero_init

__all__ = ["UNetMLP"]


class FiLMBlock(nn.Module):
    """Linear -> LayerNorm -> FiLM(c) -> SiLU: [B, in] -> [B, out]."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim, elementwise_affine=False)
        self.film = nn.Linear(cond_dim, 2 * out_dim)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h: [B, in], c: [B, cond] -> [B, out]."""
        gamma, beta = self.film(F.silu(c)).chunk(2, dim=-1)  # [B, out] each
        return F.silu(self.norm(self.linear(h)) * (1 + gamma) + beta)


class UNetMLP(nn.Module):
    """U-Net MLP v(x, t): [B, D] -> [B, D] with widths going down then up."""

    def __init__(
        self,
        input_dim: int = 1024,
        widths: Sequence[int] = (512, 256, 128),
        time_embed_dim: int = 256,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ConfigError(f"widths must be a non-empty sequence of positive ints; got {widths}")
        self.input_dim = input_dim
        self.widths = widths
        self.time_mlp = TimeMLP(time_embed_dim, time_embed_dim)
        ins = (input_dim,) + widths[:-1]
        self.down = nn.ModuleList(FiLMBlock(i, o, time_embed_dim) for i, o in zip(ins, widths))
        self.mid = FiLMBlock(widths[-1], widths[-1], time_embed_dim)
        outs = widths[-2::-1] + (widths[0],)  # mirrored: 256, 512, 512 for (512, 256, 128)
        self.up = nn.ModuleList(
            FiLMBlock(2 * w, o, time_embed_dim) for w, o in zip(widths[::-1], outs)
        )
        self.output_layer = zero_init(nn.Linear(widths[0], input_dim))

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x: [B, D], t: float, [B] or [B, 1] -> velocity [B, D]."""
        x, t = prepare_inputs(x, t, self.input_dim)
        c = self.time_mlp(t)  # [B, E]
        skips = []
        h = x
        for block in self.down:
            h = block(h, c)
            skips.append(h)
        h = self.mid(h, c)
        for block, skip in zip(self.up, reversed(skips)):
            h = block(torch.cat([h, skip], dim=-1), c)  # [B, 2 w_i] -> [B, w_{i-1}]
        return self.output_layer(h)
