"""Runs with a Gaussian base field: what an untrained network samples, reloading, config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows.gaussian_base import WithBaseField, ledoit_wolf
from flowstudy.sampling import sample_standardized
from flowstudy.train import Trainer


from flowstudy.run import load_run


def test_run_with_a_base_field_samples_the_gaussian_fit_before_training(tmp_path, tiny_config):
    """With zero-initialised output layers an untrained network adds nothing: the run's field is
    the base alone, and a checkpointed run reloads base + network."""
    cfg = tiny_config(steps=1, lr=1e-12, base_field="gaussian", aug=[])
    Trainer(cfg, tmp_path / "run", progress=False).fit()
    run = load_run(tmp_path / "run", device="cpu")
    assert isinstance(run.model, WithBaseField) and run.model.net.arch == "mlp-tiny"
    x, t = torch.randn(64, 16), torch.rand(64)
    torch.testing.assert_close(run.velocity(x, t), run.model.base(x, t) + run.model.net(x, t))
    z, _ = sample_standardized(run, 4000, solver="rk4", steps=40)
    train = run.standardizer.transform(torch.from_numpy(np.load(cfg.data.rsplit(":", 1)[0] + "/train.npy")).double())
    fitted, _ = ledoit_wolf(train)
    # Sample covariance of 4000 draws: within a few standard errors of the fitted covariance
    err = (torch.cov(z.double().T) - fitted).abs().max()
    assert err < 6 * math.sqrt(2 / 4000) * fitted.diagonal().max()
    torch.testing.assert_close(z.double().mean(0), train.mean(0), atol=0.12, rtol=0)


def test_the_loss_is_taken_on_base_plus_network(tmp_path, tiny_config):
    """Untrained networks output zero. Without a base the validation loss is that of v = 0,
    E|u|^2 ~ 2 per coordinate for standardised data; with the base it is the base field's loss, which
    for two tight clusters explains most of u. Equal losses would mean the trainer left the base out."""
    val = {}
    for base_field in ("none", "gaussian"):
        result = Trainer(tiny_config(steps=1, lr=1e-12, base_field=base_field, aug=[]), tmp_path / base_field, progress=False).fit()
        val[base_field] = result.best_val_loss
    assert val["none"] == pytest.approx(2.0, rel=0.15)
    assert val["gaussian"] < 0.8 * val["none"]


def test_bad_base_field_name(tiny_config):
    with pytest.raises(ConfigError, match="base_field must be one of none, gaussian; got 'laplace'"):
        tiny_config(base_field="laplace")
