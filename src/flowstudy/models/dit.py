"""DiT-style velocity network over chunk tokens (Peebles & Xie 2023, "Scalable Diffusion
Models with Transformers").

x: [B, D] is cut into L = D / chunk_size tokens, embedded linearly, given a learned
position embedding, and passed through AdaLN-Zero transformer blocks conditioned on the
time. Each block regresses (shift, scale, gate) for its attention and MLP branches from
the time condition c:

    x = x + gate_msa * Attn(LN(x) * (1 + scale_msa) + shift_msa)
    x = x + gate_mlp * MLP(LN(x) * (1 + scale_mlp) + shift_mlp)

with the modulation layers zero-initialised, so every block starts as the identity.
Attention normalises queries and keys per head (QK-norm; Dehghani et al. 2023,
"Scaling Vision Transformers to 22B Parameters"), which keeps attention logits bounded.
A final AdaLN and a zero-initialised Linear map tokens back to chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from flowstudy.errors import ConfigError
from flowstudy.models.inputs import check_chunks, prepare_inputs
from flowstudy.models.mlp import TimeMLP, zero_init

__all__ = ["DiTVelocityNetwork"]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x: [B, L, H]; shift, scale: [B, H] -> x * (1 + scale) + shift."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class QKNormAttention(nn.Module):
    """Multi-head self-attention with LayerNorm on queries and keys (per head)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(head_dim)
        self.k_norm = nn.LayerNorm(head_dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, L, H] -> [B, L, H]."""
        q, k, v = rearrange(
            self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads
        )  # each [B, heads, L, H/heads]
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))  # [B, L, H]


class DiTBlock(nn.Module):
    """Transformer block with AdaLN-Zero conditioning."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = QKNormAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )
        # AdaLN-Zero: all six modulations start at 0, so gates are 0 and the block is the identity.
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), zero_init(nn.Linear(dim, 6 * dim)))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x: [B, L, H], c: [B, H] -> [B, L, H]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """AdaLN then a zero-initialised Linear from tokens back to chunks."""

    def __init__(self, dim: int, chunk_size: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), zero_init(nn.Linear(dim, 2 * dim)))
        self.linear = zero_init(nn.Linear(dim, chunk_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x: [B, L, H], c: [B, H] -> [B, L, chunk_size]."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiTVelocityNetwork(nn.Module):
    """DiT over D / chunk_size tokens: v(x, t): [B, D] -> [B, D]."""

    def __init__(
        self,
        input_dim: int = 1024,
        chunk_size: int = 128,
        hidden_dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        time_embed_dim: int = 256,
    ) -> None:
        super().__init__()
        check_chunks(input_dim, chunk_size, "dit")
        if num_heads < 1 or hidden_dim % num_heads != 0:
            raise ConfigError(
                f"hidden_dim must be divisible by num_heads; got hidden_dim={hidden_dim}, "
                f"num_heads={num_heads}"
            )
        if depth < 1 or mlp_ratio <= 0:
            raise ConfigError(f"depth must be >= 1 and mlp_ratio > 0; got {depth}, {mlp_ratio}")
        self.input_dim = input_dim
        self.chunk_size = chunk_size
        self.num_tokens = input_dim // chunk_size
        self.patch_embed = nn.Linear(chunk_size, hidden_dim)
        self.pos_embed = nn.Parameter(  # learned, [1, L, H]
            nn.init.trunc_normal_(torch.empty(1, self.num_tokens, hidden_dim), std=0.02)
        )
        self.time_mlp = TimeMLP(time_embed_dim, hidden_dim)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_dim, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.final_layer = FinalLayer(hidden_dim, chunk_size)

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x: [B, D], t: float, [B] or [B, 1] -> velocity [B, D]."""
        x, t = prepare_inputs(x, t, self.input_dim)
        tokens = rearrange(x, "b (l c) -> b l c", c=self.chunk_size)  # [B, L, chunk]
        h = self.patch_embed(tokens) + self.pos_embed  # [B, L, H]
        c = self.time_mlp(t)  # [B, H]
        for block in self.blocks:
            h = block(h, c)
        out = self.final_layer(h, c)  # [B, L, chunk]
        return rearrange(out, "b l c -> b (l c)")  # [B, D]
