"""Bidirectional Mamba velocity network over chunk tokens.

x: [B, D] is cut into L = D / chunk_size chunks, projected to hidden_dim, and read by
stacks of pre-norm residual Mamba blocks (h = h + mixer(LN(h))); after every block a
per-layer projection of the time condition is added. Three ways to see both directions,
chosen by ``bidirectional``:

- "separate": num_layers forward blocks and num_layers backward blocks (the backward
  stack reads the chunks reversed; its output is flipped back); the two outputs are
  concatenated and projected to chunks;
- "tied": as "separate", but block i of both stacks shares in_proj and out_proj, as in
  Caduceus's BiMamba (Schiff et al. 2024); removes 2 * num_layers * (in_proj + out_proj)
  weights (1,572,864 at the defaults);
- "merged": num_layers blocks whose mixer runs a forward and a backward SSM branch and
  sums them (Vision Mamba, Zhu et al. 2024).

The output projection is zero-initialised, so an untrained network outputs v = 0.
Each chunk token gets a learned position vector after input_proj (``pos_embed=True``).

Two options exist for ablations. ``mixer`` replaces the Mamba mixer inside the same wrapper:
"token-mlp" (no mixing between chunks) or "attention" (DiT's QK-norm attention); see
:mod:`flowstudy.models.mixers`. ``time_cond`` chooses how the time enters each block: "add"
(a per-layer projection of the time condition added after the block, the default) or "adaln"
(DiT's AdaLN-Zero: h + gate(c) * mixer(LN(h) * (1 + scale(c)) + shift(c)), zero-initialised so
every block starts as the identity).
At the defaults (D=1024, chunk 64, hidden 256, 4 layers, d_state 16, expand 2) the eight
Mamba mixers hold 8 * 437,760 = 3,502,080 parameters and the network 4,218,688 (16 * 256 of
them position vectors).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from flowstudy.errors import ConfigError
from flowstudy.models.dit import modulate
from flowstudy.models.inputs import check_chunks, prepare_inputs
from flowstudy.models.mixers import MIXERS, make_mixer
from flowstudy.models.mlp import TimeMLP, zero_init
from flowstudy.models.ssm.backend import check_backend
from flowstudy.models.ssm.bimamba_layer import BiMambaLayer
from flowstudy.models.ssm.fused import fused_status
from flowstudy.models.ssm.mamba_layer import MambaLayer

__all__ = ["BIDIRECTIONAL", "MIXERS", "TIME_CONDITIONING", "MambaVelocityNetwork", "fused_status"]

BIDIRECTIONAL = ("separate", "tied", "merged")
TIME_CONDITIONING = ("add", "adaln")


def __getattr__(name: str) -> Any:
    # MAMBA_AVAILABLE is computed on first access: importing this module must not import
    # mamba_ssm or initialise CUDA.
    if name == "MAMBA_AVAILABLE":
        return fused_status()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class MambaBlock(nn.Module):
    """Pre-norm residual block: h + mixer(LN(h)), [B, L, H] -> [B, L, H].

    With ``adaln=True`` the block is AdaLN-Zero conditioned on c: [B, H],
    h + gate(c) * mixer(LN(h) * (1 + scale(c)) + shift(c)), and starts as the identity.
    """

    def __init__(self, mixer: nn.Module, dim: int, adaln: bool = False) -> None:
        super().__init__()
        self.mixer = mixer
        self.norm = nn.LayerNorm(dim, elementwise_affine=not adaln, eps=1e-6 if adaln else 1e-5)
        self.adaLN_modulation = (
            nn.Sequential(nn.SiLU(), zero_init(nn.Linear(dim, 3 * dim))) if adaln else None
        )

    def forward(self, h: Tensor, c: Tensor | None = None) -> Tensor:
        """h: [B, L, H], c: [B, H] (needed with adaln) -> [B, L, H]."""
        if self.adaLN_modulation is None:
            return h + self.mixer(self.norm(h))
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=-1)  # [B, H] each
        return h + gate.unsqueeze(1) * self.mixer(modulate(self.norm(h), shift, scale))


class MambaVelocityNetwork(nn.Module):
    """Bidirectional Mamba v(x, t): [B, D] -> [B, D] over D / chunk_size tokens."""

    def __init__(
        self,
        input_dim: int = 1024,
        chunk_size: int = 64,
        hidden_dim: int = 256,
        num_layers: int = 4,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        time_embed_dim: int = 256,
        bidirectional: str = "separate",
        backend: str = "auto",
        pos_embed: bool = True,
        mixer: str = "mamba",
        time_cond: str = "add",
    ) -> None:
        super().__init__()
        check_chunks(input_dim, chunk_size, "mamba")
        for name, value, valid in (
            ("bidirectional mode", bidirectional, BIDIRECTIONAL),
            ("mixer", mixer, MIXERS),
            ("time_cond", time_cond, TIME_CONDITIONING),
        ):
            if value not in valid:
                raise ConfigError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if bidirectional == "tied" and mixer != "mamba":
            raise ConfigError(f"bidirectional='tied' shares Mamba projections; it needs mixer='mamba', got {mixer!r}")
        if num_layers < 1 or hidden_dim < 1:
            raise ConfigError(f"num_layers and hidden_dim must be positive; got {num_layers}, {hidden_dim}")
        self.backend = check_backend(backend)
        self.input_dim, self.chunk_size = input_dim, chunk_size
        self.bidirectional, self.mixer, self.time_cond = bidirectional, mixer, time_cond
        mixer_kw = dict(d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)
        adaln = time_cond == "adaln"

        def block(merged: bool) -> MambaBlock:
            if mixer != "mamba":
                layer = make_mixer(mixer, hidden_dim, expand=expand)
            else:
                layer = (BiMambaLayer if merged else MambaLayer)(hidden_dim, **mixer_kw)
            return MambaBlock(layer, hidden_dim, adaln=adaln)

        def time_projections() -> nn.ModuleList | None:
            # "add": a per-layer projection of the time condition after each block.
            return None if adaln else nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers))

        self.time_mlp = TimeMLP(time_embed_dim, hidden_dim)
        self.input_proj = nn.Linear(chunk_size, hidden_dim)
        # Which chunk a token is: input_proj is shared by all chunks, and a causal scan can only
        # infer a token's place from its content, so without this every chunk reads alike.
        n_chunks = input_dim // chunk_size
        self.pos_embed = nn.Parameter(torch.randn(1, n_chunks, hidden_dim) * 0.02) if pos_embed else None
        n_dirs = 1 if bidirectional == "merged" else 2
        self.fwd_layers = nn.ModuleList(block(bidirectional == "merged") for _ in range(num_layers))
        self.fwd_time_proj = time_projections()
        self.fwd_norm = nn.LayerNorm(hidden_dim)
        if n_dirs == 2:
            self.bwd_layers = nn.ModuleList(block(False) for _ in range(num_layers))
            self.bwd_time_proj = time_projections()
            self.bwd_norm = nn.LayerNorm(hidden_dim)
            if bidirectional == "tied":
                for f, b in zip(self.fwd_layers, self.bwd_layers):
                    b.mixer.in_proj = f.mixer.in_proj  # shared modules: one set of weights
                    b.mixer.out_proj = f.mixer.out_proj
        self.output_proj = zero_init(nn.Linear(n_dirs * hidden_dim, chunk_size))

    def set_backend(self, backend: str) -> None:
        """Switch every Mamba layer to backend ("auto", "torch", "fused" or "triton")."""
        self.backend = check_backend(backend)
        for module in self.modules():
            if isinstance(module, (MambaLayer, BiMambaLayer)):
                module.backend = backend

    @staticmethod
    def _stack(h: Tensor, c: Tensor, layers: nn.ModuleList, time_proj: nn.ModuleList | None) -> Tensor:
        """Run a stack of blocks: [B, L, H]; c: [B, H] the time condition (before SiLU)."""
        if time_proj is None:  # AdaLN: the blocks take c themselves
            for block in layers:
                h = block(h, c)
            return h
        c = F.silu(c)
        for block, proj in zip(layers, time_proj):
            h = block(h) + proj(c).unsqueeze(1)
        return h

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x: [B, D], t: float, [B] or [B, 1] -> velocity [B, D]."""
        x, t = prepare_inputs(x, t, self.input_dim)
        h = self.input_proj(rearrange(x, "b (l c) -> b l c", c=self.chunk_size))  # [B, L, H]
        if self.pos_embed is not None:
            h = h + self.pos_embed
        c = self.time_mlp(t)  # [B, H]
        out = self.fwd_norm(self._stack(h, c, self.fwd_layers, self.fwd_time_proj))
        if self.bidirectional != "merged":
            back = self._stack(h.flip(1), c, self.bwd_layers, self.bwd_time_proj)
            out = torch.cat([out, self.bwd_norm(back).flip(1)], dim=-1)  # [B, L, 2H]
        v = self.output_proj(out)  # [B, L, chunk]
        return rearrange(v, "b l c -> b (l c)")  # [B, D]
