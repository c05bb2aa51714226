"""A run's batches: epoch-wise random permutations of its rows, drawn from the run's generator."""

from __future__ import annotations

from typing import Any

import torch


class Batcher:
    """Epoch-wise random permutations of N rows; batches of exactly ``batch_size`` rows.

    A permutation's tail shorter than a batch is skipped (a different tail each epoch).
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, min(batch_size, n), generator
        self.perm = torch.randperm(n, generator=generator, device=generator.device)  # [N]
        self.pos = 0

    def next(self) -> torch.Tensor:
        """The next batch's row indices: [batch_size] long, on the generator's device."""
        if self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator, device=self.generator.device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm.cpu(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"].to(self.generator.device), int(state["pos"])


__all__ = ["Batcher"]
