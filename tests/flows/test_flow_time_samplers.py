"""Time samplers: moments within the sampling error of n draws."""

from __future__ import annotations

import math

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows import TIME_SAMPLERS, LogitNormalTime, UniformTime

N = 200_000
CPU = torch.device("cpu")


def test_uniform_moments():
    t = UniformTime()(N, device=CPU, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert t.shape == (N,) and t.min() >= 0 and t.max() < 1
    # U[0,1]: mean 1/2 (sd of the estimate sqrt(1/12/N)), variance 1/12 (sd sqrt(1/180/N))
    assert t.mean().item() == pytest.approx(0.5, abs=5 * math.sqrt(1 / 12 / N))
    assert t.var().item() == pytest.approx(1 / 12, abs=5 * math.sqrt(1 / 180 / N))


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (-0.5, 0.7), (1.0, 1.5)])
def test_logit_normal_moments(mean, std):
    t = LogitNormalTime(mean, std)(N, device=CPU, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert t.min() > 0 and t.max() < 1
    logit = torch.log(t) - torch.log1p(-t)
    # normal sample: sd of the mean std/sqrt(N), of the sample std about std/sqrt(2N)
    assert logit.mean().item() == pytest.approx(mean, abs=5 * std / math.sqrt(N))
    assert logit.std().item() == pytest.approx(std, abs=5 * std / math.sqrt(2 * N))


@pytest.mark.parametrize("sampler", [UniformTime(), LogitNormalTime()], ids=repr)
def test_deterministic_under_a_seed(sampler):
    draw = [sampler(64, device=CPU, dtype=torch.float32, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*draw) and draw[0].dtype == torch.float32


def test_invalid_logit_normal():
    with pytest.raises(ConfigError, match="std"):
        LogitNormalTime(std=0.0)


def test_registry_names():
    assert set(TIME_SAMPLERS) == {"uniform", "logit_normal"}
