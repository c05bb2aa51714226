"""What a run trains on: its standardised rows on the training device, and the base field fitted to them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from flowstudy.data import EmbeddingSet, Standardizer, apply_augmentations
from flowstudy.data.resolve import load_config_splits
from flowstudy.flows.gaussian_base import GaussianBaseField
from flowstudy.train.config import TrainConfig

BASE_FIT_SEED = 31_337
"""Added to the run's seed for the base fit's own augmentation draws (the run's stream is untouched)."""


@dataclass
class RunRows:
    """A run's rows in standardised space, held on its device (batches are index lookups, no loader):
    ``train_x1`` [N, D], ``val_x1`` [N_val, D]; ``train_x0`` / ``val_x0`` the paired source rows of a
    reflow run (else None). ``train_set`` / ``val_set``: the embedding sets they came from (None for reflow)."""

    standardizer: Standardizer
    train_x1: torch.Tensor
    val_x1: torch.Tensor
    train_x0: torch.Tensor | None = None
    val_x0: torch.Tensor | None = None
    train_set: EmbeddingSet | None = None
    val_set: EmbeddingSet | None = None

    @property
    def dim(self) -> int:
        return self.train_x1.shape[1]


def load_rows(config: TrainConfig, run_dir: Path, device: torch.device, resume_state: dict | None) -> RunRows:
    """The run's rows: its data and validation split (the standardizer fitted to the training rows,
    or restored from ``resume_state``), or a reflow run's pairs."""
    if config.flow == "reflow":
        from flowstudy.train.reflow import load_reflow_pairs

        pairs = load_reflow_pairs(config, run_dir, device)
        return RunRows(pairs.standardizer, pairs.x1, pairs.val_x1, pairs.x0, pairs.val_x0)
    train, val = load_config_splits(config)
    if resume_state is not None:
        standardizer = Standardizer.from_state_dict(resume_state["standardizer"])
    else:
        standardizer = Standardizer.fit(torch.from_numpy(train.embeddings), floor_ratio=config.std_floor)
    rows = lambda split: standardizer.transform(torch.from_numpy(split.embeddings)).to(device)  # noqa: E731
    return RunRows(standardizer, rows(train), rows(val), train_set=train, val_set=val)


def base_field_for(config: TrainConfig, x1: torch.Tensor, flow, augmentations, resume_state: dict | None):
    """The run's Gaussian base field for its training rows x1 [N, D] (None without one): restored on
    resume, else fitted. ``base_fit`` "augmented": fitted to what the network is trained on, the rows
    as augmented (4 draws each, from a generator of its own so the training stream is the same with
    or without a base); "train": to the training rows, the Gaussian fit held-out NLL compares with."""
    if config.base_field == "none":
        return None
    if resume_state is not None and resume_state.get("base_field") is not None:
        return GaussianBaseField.from_state(resume_state["base_field"], flow.path).to(x1.device)
    generator = torch.Generator(device=x1.device).manual_seed(config.seed + BASE_FIT_SEED)
    raw = not augmentations or config.base_fit == "train"
    rows = x1 if raw else torch.cat([apply_augmentations(x1, augmentations, generator) for _ in range(4)])
    return GaussianBaseField.fit(rows, flow.path).to(x1.device)


__all__ = ["BASE_FIT_SEED", "RunRows", "base_field_for", "load_rows"]
