"""Sinusoidal time embedding, the time MLP every network shares, and a residual MLP.

``timestep_embedding`` is the one time embedding of the package; ``TimeMLP`` maps it to
a conditioning vector. ``SimpleMLP`` is the baseline velocity network: the time
condition is concatenated to x, then pre-norm residual blocks (Linear, LayerNorm, SiLU)
and a zero-initialised output layer, so an untrained network predicts v = 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowstudy.errors import ConfigError
from flowstudy.models.inputs import prepare_inputs

__all__ = ["timestep_embedding", "TimeMLP", "SimpleMLP", "zero_init"]


def timestep_embedding(
    t: Tensor, dim: int, max_period: float = 10000.0, time_scale: float = 1000.0
) -> Tensor:
    """Sinusoidal embedding of times t: [B] -> [B, dim].

    emb = [cos(s t f_0), ..., cos(s t f_{h-1}), sin(s t f_0), ..., sin(s t f_{h-1})],
    f_k = max_period^(-k / h), h = dim // 2 (Vaswani et al. 2017; DDPM, Ho et al. 2020).
    Flow times lie in [0, 1]; s = time_scale = 1000 spreads them over the range of
    diffusion step indices for which these frequencies were chosen, so the fastest
    component still turns about 160 times over [0, 1]. An odd dim gets a zero column.
    Computed in float32 (float64 if t is float64).
    """
    half = dim // 2
    ct = torch.float64 if t.dtype == torch.float64 else torch.float32
    k = torch.arange(half, device=t.device, dtype=ct)
    freqs = torch.exp(-math.log(max_period) * k / max(half, 1))  # [h]
    args = time_scale * t.to(ct)[:, None] * freqs[None, :]  # [B, h]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [B, 2h]
    if dim % 2:
        emb = F.pad(emb, (0, 1))  # [B, dim]
    return emb


class TimeMLP(nn.Module):
    """Linear(time_embed_dim, out_dim) -> SiLU -> Linear(out_dim, out_dim) on the sinusoid."""

    def __init__(self, time_embed_dim: int, out_dim: int) -> None:
        super().__init__()
        self.time_embed_dim = time_embed_dim
        self.net = nn.Sequential(
            nn.Linear(time_embed_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        """t: [B] -> [B, out_dim]."""
        emb = timestep_embedding(t, self.time_embed_dim)  # [B, E]
        return self.net(emb.to(self.net[0].weight.dtype))


def zero_init(layer: nn.Linear) -> nn.Linear:
    """Zero a Linear's weight and bias (output layers: an untrained network outputs 0)."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class _ResidualBlock(nn.Module):
    """h + Linear(SiLU(LayerNorm(h))): pre-norm keeps deep stacks trainable."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.linear(F.silu(self.norm(h)))


class SimpleMLP(nn.Module):
    """MLP velocity network v(x, t): [B, D] -> [B, D].

    h_0 = Linear([x, TimeMLP(t)]); h_{i+1} = h_i + W_i SiLU(LN(h_i)) for the
    num_layers - 2 hidden blocks; v = W_out SiLU(LN(h)) with W_out = 0 at init.
    num_layers counts the Linear layers on the x path (input, hidden, output).
    """

    def __init__(
        self,
        input_dim: int = 1024,
        hidden_dim: int = 256,
        num_layers: int = 5,
        time_embed_dim: int = 256,
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ConfigError(f"num_layers must be >= 2 (input and output layers); got {num_layers}")
        if min(input_dim, hidden_dim, time_embed_dim) < 1:
            raise ConfigError(
                f"input_dim, hidden_dim and time_embed_dim must be positive; "
                f"got {input_dim}, {hidden_dim}, {time_embed_dim}"
            )
        self.input_dim = input_dim
        self.time_mlp = TimeMLP(time_embed_dim, hidden_dim)
        self.input_layer = nn.Linear(input_dim + hidden_dim, hidden_dim)
        self.blocks = nn.ModuleList(_ResidualBlock(hidden_dim) for _ in range(num_layers - 2))
        self.final_norm = nn.LayerNorm(hidden_dim)
        self.output_layer = zero_init(nn.Linear(hidden_dim, input_dim))

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x: [B, D], t: float, [B] or [B, 1] -> velocity [B, D]."""
        x, t = prepare_inputs(x, t, self.input_dim)
        c = self.time_mlp(t)  # [B, H]
        h = self.input_layer(torch.cat([x, c.to(x.dtype)], dim=-1))  # [B, H]
        for block in self.blocks:
            h = block(h)
        return self.output_layer(F.silu(self.final_norm(h)))
