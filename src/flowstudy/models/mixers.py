"""Token mixers that can stand in for the Mamba mixer in ``MambaVelocityNetwork``.

They exist for ablations that isolate what the selective scan contributes (issue: does the
bidirectional Mamba learn velocity fields?). Each maps [B, L, H] -> [B, L, H]:

- ``TokenMLP``: a per-token gated MLP, out = W_o (SiLU(W_g h) ⊙ W_u h), with the Mamba
  mixer's inner width (expand · H). No information moves between chunks, so a network built
  from it is a per-chunk network with time conditioning and position embeddings;
- ``QKNormAttention`` (from :mod:`flowstudy.models.dit`): full bidirectional self-attention,
  i.e. DiT's mixer in the Mamba wrapper.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from flowstudy.models.dit import QKNormAttention

__all__ = ["MIXERS", "TokenMLP", "make_mixer"]

MIXERS = ("mamba", "token-mlp", "attention")


class TokenMLP(nn.Module):
    """Per-token gated MLP: [B, L, H] -> [B, L, H]; no mixing between tokens."""

    def __init__(self, dim: int, expand: int = 2) -> None:
        super().__init__()
        inner = expand * dim
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)  # gate and value, as Mamba's in_proj
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        """h: [B, L, H] -> [B, L, H]."""
        gate, value = self.in_proj(h).chunk(2, dim=-1)  # [B, L, expand*H] each
        return self.out_proj(F.silu(gate) * value)


def make_mixer(kind: str, dim: int, *, expand: int, attention_head_dim: int = 64) -> nn.Module:
    """A non-Mamba mixer by name ("token-mlp" or "attention"); see :data:`MIXERS`."""
    if kind == "token-mlp":
        return TokenMLP(dim, expand)
    if kind == "attention":
        heads = max(1, dim // attention_head_dim)
        if dim % heads:
            heads = 1
        return QKNormAttention(dim, heads)
    raise ValueError(f"make_mixer builds token-mlp or attention; got {kind!r}")
