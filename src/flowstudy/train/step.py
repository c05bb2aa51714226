"""One definition of a training step's maths, which every way of running it uses.

The trainer's eager step (:meth:`~flowstudy.train.trainer.Trainer.train_step`), its CUDA-graph
form (:mod:`flowstudy.train.graph`) and a stacked group's per-member draws
(:mod:`flowstudy.train.stacked`) all take their batch and loss from here:

    rows      x1 = augment(space.x1[idx]);  x0 = space.x0[idx] (paired runs) or None   [B, D']
    loss      L = space.loss_scale · flow.loss(space.field, x1, x0)    (under the run's precision)
    logged    L + space.loss_offset

:class:`StepSpace` says what the step works on: the run's own rows and field, or the rotated
(and possibly cut) ones of a subspace-residual run (:mod:`flowstudy.train.eigen_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from flowstudy.data import apply_augmentations
from flowstudy.flows.gaussian_base import DiagonalGaussianBase, GaussianBaseField
from flowstudy.train.precision import autocast_for


@dataclass
class StepSpace:
    """The rows and velocity field a training step works on, and how its loss maps to the run's.

    ``x1`` [N, D'] (and ``x0`` [N, D'] for paired runs, else None): the training rows the step
    draws from; ``net``: the network the step calls (the run's, or a view of its weights in
    eigen-coordinates); ``base``: the base field there (None without one); ``field``: the velocity
    the loss sees, ``net`` plus ``base``. ``loss_scale`` multiplies the step's loss (k / D when it
    keeps k of D coordinates); ``loss_offset`` is added to the logged loss (the expected loss of
    the coordinates left out)."""

    x1: Tensor
    x0: Tensor | None
    net: nn.Module
    base: GaussianBaseField | None
    field: Callable[[Tensor, Tensor], Tensor]
    loss_scale: float = 1.0
    loss_offset: float = 0.0

    @property
    def rotation(self) -> Tensor | None:
        """R [D, D] with step rows = rows @ R when the step works in eigen-coordinates, else None."""
        return self.base.eigvecs if isinstance(self.base, DiagonalGaussianBase) else None

    def batch(self, idx: Tensor, augmentations, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """The rows at ``idx`` [B], augmented, and their paired x0 rows (or None): [B, D'] each."""
        x1 = apply_augmentations(self.x1.index_select(0, idx), augmentations, generator)
        return x1, (self.x0.index_select(0, idx) if self.x0 is not None else None)

    def loss(self, flow, x1: Tensor, x0: Tensor | None, generator: torch.Generator, precision: str) -> Tensor:
        """The step's loss on one batch (what backward differentiates): a scalar."""
        with autocast_for(x1.device, precision):
            loss = flow.loss(self.field, x1, x0, generator=generator)
        return loss * self.loss_scale if self.loss_scale != 1.0 else loss  # the k leading coordinates' share

    def logged(self, loss: Tensor) -> Tensor:
        """The loss as the run logs it, detached: the step's loss plus the left-out coordinates' term."""
        return loss.detach() + self.loss_offset if self.loss_offset else loss.detach()


__all__ = ["StepSpace"]
