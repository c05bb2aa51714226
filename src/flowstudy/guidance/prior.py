"""The prior a guided optimisation samples from: a velocity field in standardised space.

``load_prior(spec)`` takes a run directory (its EMA network, with its base field if it has one) or
``gaussian:DATASPEC``: the closed-form velocity of the Ledoit–Wolf Gaussian fit of DATASPEC's rows
alone (:class:`~flowstudy.flows.gaussian_base.GaussianBaseField`), the prior a learned network has
to beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from flowstudy.data import EmbeddingSet, Standardizer, load_dataset
from flowstudy.data.resolve import default_val_spec
from flowstudy.run import load_run

Velocity = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Prior:
    """velocity(z: [B, D], t: [B]) -> [B, D] in the standardised space of ``standardizer``;
    ``train``: the training rows (original space) with their texts, for nearest neighbours."""

    spec: str
    velocity: Velocity
    standardizer: Standardizer
    train: EmbeddingSet
    val_spec: str | None = None

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return self.standardizer.dim

    def to_std(self, x: np.ndarray | Tensor) -> Tensor:
        """Original space [n, D] -> standardised float64 [n, D]."""
        return self.standardizer.transform(torch.as_tensor(np.asarray(x)).double())

    def to_original(self, z: Tensor) -> np.ndarray:
        """Standardised [n, D] -> original-space float32 [n, D] (what is evaluated and stored)."""
        return self.standardizer.inverse(z.detach().double()).float().numpy()

    def train_std(self) -> Tensor:
        """The training rows in the standardised space, float64 [N, D]."""
        return self.to_std(self.train.embeddings)

    @classmethod
    def of_run(cls, run, spec: str | None = None) -> Prior:
        """A trained :class:`~flowstudy.run.Run`'s velocity field (frozen) as a prior; ``spec``
        names it (default: its directory)."""
        for p in run.model.parameters():
            p.requires_grad_(False)
        data = run.config["data"]
        val = run.config.get("val") or default_val_spec(data)
        return cls(spec or str(run.path), run.model, run.standardizer, load_dataset(data), val)


def load_prior(spec: str, device: str = "cpu") -> Prior:
    """A run directory, or ``gaussian:DATASPEC`` for the Gaussian fit's velocity alone."""
    if spec.startswith("gaussian:"):
        return _gaussian_prior(spec)
    return Prior.of_run(load_run(spec, "best", device=device), spec)


def _gaussian_prior(spec: str) -> Prior:
    from flowstudy.flows import create_flow
    from flowstudy.flows.gaussian_base import GaussianBaseField

    data = spec[len("gaussian:") :]
    train = load_dataset(data)
    standardizer = Standardizer.fit(torch.from_numpy(train.embeddings).double())
    z = standardizer.transform(torch.from_numpy(train.embeddings).double())
    base = GaussianBaseField.fit(z, create_flow("icfm").path).eval()
    return Prior(spec, base, standardizer, train, default_val_spec(data))
