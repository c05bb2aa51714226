from __future__ import annotations

import numpy as np
import pytest

from flowstudy.train import TrainConfig


@pytest.fixture
def tiny_data(tmp_path_factory):
    """A 16-D two-cluster data set in a folder with train/val splits."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 3
    for split, n in (("train", 256), ("val", 64)):
        x = centres[rng.integers(0, 2, n)] + 0.3 * rng.normal(size=(n, 16))
        np.save(root / f"{split}.npy", (0.01 * x + 0.05).astype(np.float32))
    return root


@pytest.fixture
def tiny_config(tiny_data):
    def make(**overrides) -> TrainConfig:
        values = dict(
            data=f"{tiny_data}:train", arch="mlp-tiny", flow="icfm", steps=60, batch_size=32, lr=2e-3,
            val_every=20, device="cpu", seed=3,
        )
        values.update(overrides)
        return TrainConfig(**values).validate()

    return make
