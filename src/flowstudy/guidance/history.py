"""What an optimisation has evaluated so far, and what a method proposes next."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Proposal:
    """q candidates: z [q, D] standardised; noise [q, D] float32 that the flow decoded into z (NaN rows
    for candidates that did not come from the flow); train_row [q] (-1 unless a training row)."""

    z: Tensor
    noise: Tensor
    train_row: np.ndarray

    @classmethod
    def from_flow(cls, z: Tensor, noise: Tensor) -> Proposal:
        """Candidates z [q, D] (standardised) decoded from flow noise [q, D]."""
        return cls(z.double(), noise.float(), np.full(z.shape[0], -1, dtype=np.int64))

    @classmethod
    def without_noise(cls, z: Tensor, train_row: np.ndarray | None = None) -> Proposal:
        """Candidates z [q, D] with no flow noise (NaN), optionally the training rows they are."""
        rows = np.full(z.shape[0], -1, dtype=np.int64) if train_row is None else np.asarray(train_row, dtype=np.int64)
        return cls(z.double(), torch.full(z.shape, float("nan")), rows)


@dataclass(frozen=True)
class History:
    """Evaluations in order: z [n, D] float64 (standardised from the stored float32 originals),
    y [n] float64, noise [n, D] float32 (NaN rows: not from the flow), round [n] (0 = initial
    design), train_row [n]."""

    z: Tensor
    y: Tensor
    noise: Tensor
    round: np.ndarray
    train_row: np.ndarray

    @property
    def n(self) -> int:
        """Number of evaluations."""
        return int(self.y.shape[0])

    def best(self, k: int) -> np.ndarray:
        """Indices of the k highest scores, best first (ties: earlier first)."""
        order = np.argsort(-self.y.numpy(), kind="stable")
        return order[:k]

    def with_noise(self) -> np.ndarray:
        """Indices of the evaluations that have a source noise."""
        return np.flatnonzero(torch.isfinite(self.noise).all(dim=1).numpy())
