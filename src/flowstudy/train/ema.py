"""Exponential moving average of a model's parameters, with decay warm-up."""

from __future__ import annotations

import copy

import torch
from torch import nn

from flowstudy.train.schedule import ema_decay_at


class EMA:
    """Shadow copy ``ema = d * ema + (1 - d) * param`` with d = ema_decay_at(num_updates, decay).

    Buffers are copied, not averaged. The shadow is kept in fp32 whatever the model's dtype.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """One EMA step; returns the decay that was used."""
        d = ema_decay_at(self.num_updates, self.decay)
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1 - d)  # ema += (1 - d) * (p - ema)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.num_updates += 1
        return d

    def state_dict(self) -> dict[str, object]:
        """The averaged weights, the update count and the target decay."""
        return {"model": self.model.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
        self.decay = float(state["decay"])
