"""Distributions of the training time t in [0, 1] (t = 0 noise, t = 1 data).

A sampler is called as ``sampler(n, device=..., dtype=..., generator=...) -> t: [n]``. All
randomness comes from ``generator`` (torch's global RNG when None); a generator must live on
the device it draws for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from flowstudy.errors import ConfigError


class TimeSampler(Protocol):
    """Draws n training times t in [0, 1] (shape [n])."""

    def __call__(
        self, n: int, *, device: torch.device, dtype: torch.dtype, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw n times: [n]."""
        ...


@dataclass(frozen=True)
class UniformTime:
    """t ~ U[0, 1)."""

    def __call__(
        self, n: int, *, device: torch.device, dtype: torch.dtype, generator: torch.Generator | None = None
    ) -> Tensor:
        return torch.rand(n, generator=generator, device=device, dtype=dtype)  # [n]


@dataclass(frozen=True)
class LogitNormalTime:
    """t = sigmoid(m + s·n), n ~ N(0, 1): logit(t) ~ N(mean, std^2) (Esser et al. 2024, SD3).

    Concentrates training on intermediate times, where the velocity is hardest to predict.
    """

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ConfigError(f"logit-normal needs a finite mean and std > 0; got mean={self.mean}, std={self.std}")

    def __call__(
        self, n: int, *, device: torch.device, dtype: torch.dtype, generator: torch.Generator | None = None
    ) -> Tensor:
        normal = torch.randn(n, generator=generator, device=device, dtype=dtype)  # [n]
        return torch.sigmoid(self.mean + self.std * normal)


TIME_SAMPLERS: dict[str, type] = {
    "uniform": UniformTime,
    "logit_normal": LogitNormalTime,
}
"""Time-sampler name -> class; options are the class's dataclass fields."""
