"""A time-gated identity path around any velocity network.

    v(x, t) = net(x, t) + g(t) ⊙ x,      g: sinusoid(t) -> Linear -> SiLU -> Linear -> [B, D]

Why: in standardised space most of a flow's velocity is linear in x. For data ~ N(0, I) the
exact field is v(x, t) = (2t - 1) / ((1 - t)^2 + t^2) · x. A network whose last layer maps a
width-H hidden state to D > H outputs (the MLP at H = 256, the U-Net's 512-wide top level) can
only move x inside an H-dimensional subspace: the other D - H directions of the noise pass
through to the samples untouched. On builtin:sonar-gsm8k-1k an MLP without this path produced
samples with 24 % too much spread per dimension and nearest-neighbour fidelity worse than
plain noise; with it, it beat the Gaussian fit (see docs/models.md). The gate's last layer is
zero-initialised, so an untrained network still outputs exactly zero.
"""

from __future__ import annotations

from torch import Tensor, nn

from flowstudy.models.inputs import prepare_inputs
from flowstudy.models.mlp import timestep_embedding, zero_init


class TimeGatedSkip(nn.Module):
    """Wraps ``net`` (forward(x: [B, D], t) -> [B, D]) with a per-dimension, time-dependent gain on x."""

    def __init__(self, net: nn.Module, input_dim: int, time_embed_dim: int = 128, hidden_dim: int = 256) -> None:
        super().__init__()
        self.net = net
        self.input_dim = input_dim
        self.time_embed_dim = time_embed_dim
        self.gain = nn.Sequential(nn.Linear(time_embed_dim, hidden_dim), nn.SiLU(), zero_init(nn.Linear(hidden_dim, input_dim)))

    def forward(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x: [B, D], t: float, [B] or [B, 1] -> velocity [B, D]."""
        x, t = prepare_inputs(x, t, self.input_dim)
        emb = timestep_embedding(t, self.time_embed_dim)  # [B, E]
        g = self.gain(emb.to(self.gain[0].weight.dtype))  # [B, D]
        return self.net(x, t) + g * x
