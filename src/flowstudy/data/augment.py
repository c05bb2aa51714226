"""Data-side augmentations, applied to a standardised training batch x: [B, D].

Each is a small pure function with its strength as an argument and a torch.Generator for
reproducibility. ``parse_augmentations("mixup:0.2,noise:0.05")`` builds a pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flowstudy.errors import ConfigError


def mixup(x: torch.Tensor, alpha: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_i' = lam_i x_i + (1 - lam_i) x_perm(i), lam_i ~ Beta(alpha, alpha) (Zhang et al. 2018).

    Every output row lies on the segment between two rows of the batch.
    """
    if alpha <= 0:
        raise ConfigError(f"mixup alpha must be > 0; got {alpha}")
    batch = x.shape[0]
    perm = torch.randperm(batch, generator=generator, device=x.device)
    # Beta from two Gammas via the generator-aware uniform -> keep runs reproducible.
    lam = _beta(alpha, batch, generator, x.device).to(x.dtype).unsqueeze(1)  # [B, 1]
    return lam * x + (1 - lam) * x[perm]


def _beta(alpha: float, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Beta(alpha, alpha) draws seeded from ``generator`` (torch's gamma takes no generator)."""
    import numpy as np

    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
    draws = np.random.default_rng(seed).beta(alpha, alpha, size=n)
    return torch.as_tensor(draws, device=device)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + std * eps, eps ~ N(0, I). In standardised space std is relative to each dimension's spread."""
    if std < 0:
        raise ConfigError(f"noise std must be >= 0; got {std}")
    return _noise(x, std, generator)


def dim_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set each entry to 0 (the training mean, in standardised space) with probability p.

    No 1/(1-p) rescaling: that would inflate the kept dimensions' spread.
    """
    if not 0 <= p < 1:
        raise ConfigError(f"dimension dropout p must be in [0, 1); got {p}")
    return _dropout(x, p, generator)


def _noise(x: torch.Tensor, std: float | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _dropout(x: torch.Tensor, p: float | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep.to(x.dtype)


ELEMENTWISE: dict[str, Callable[..., torch.Tensor]] = {"noise": _noise, "dropout": _dropout}
"""The per-entry augmentations, unchecked, with a strength that may be a tensor broadcasting against
x: a stacked group draws them for all members at once (flowstudy.train.group_batch)."""


ROTATION_EQUIVARIANT = ("mixup", "noise")
"""Augmentations that commute with a fixed rotation of the rows (the noise is isotropic in
standardised space); dimension dropout does not. A subspace residual trains in its base's
eigen-coordinates only under these (flowstudy.train.eigen_step)."""


AUGMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "mixup": mixup,
    "noise": gaussian_noise,
    "dropout": dim_dropout,
}

Augmentation = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def parse_augmentations(spec: str | list[str] | None) -> list[tuple[str, float]]:
    """``"mixup:0.2,noise:0.05"`` or ``["mixup:0.2"]`` -> [("mixup", 0.2), ("noise", 0.05)]."""
    if not spec:
        return []
    items = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    parsed = []
    for item in (i.strip() for i in items if i.strip()):
        name, _, value = item.partition(":")
        if name not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation '{name}'; valid: {', '.join(AUGMENTATIONS)}")
        try:
            parsed.append((name, float(value)))
        except ValueError:
            raise ConfigError(f"augmentation '{item}' needs a numeric strength, e.g. {name}:0.1") from None
    return parsed


def apply_augmentations(
    x: torch.Tensor, augmentations: list[tuple[str, float]], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply parsed augmentations in order."""
    for name, strength in augmentations:
        x = AUGMENTATIONS[name](x, strength, generator)
    return x
