from __future__ import annotations

import pytest

from flowstudy.train import TrainConfig


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
