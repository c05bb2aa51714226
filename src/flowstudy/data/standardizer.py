"""Per-dimension z-score fitted on the training split, with a std floor.

    z = (x - mean) / s,    s_d = max(std_d, floor_ratio * median_d' std_d')

The floor matters for SONAR: two of its 1024 dimensions are nearly constant (std ~2e-5
against a median of ~5e-3); without it they become values in the hundreds and dominate
every loss and distance.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flowstudy.errors import CheckpointError, DataError


class Standardizer:
    """Exact affine map between original space and standardised space.

    mean, scale: float64 [D]. ``transform``/``inverse`` return the dtype of their input
    (computed in float64 internally so the round trip is exact to that precision).
    """

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, floor_ratio: float, raw_std: torch.Tensor):
        if mean.shape != scale.shape or mean.ndim != 1:
            raise DataError(f"standardizer mean and scale must both have shape [D]; got {tuple(mean.shape)} and {tuple(scale.shape)}")
        if not bool((scale > 0).all()):
            raise DataError("standardizer scale must be positive in every dimension")
        self.mean = mean.to(torch.float64)
        self.scale = scale.to(torch.float64)
        self.raw_std = raw_std.to(torch.float64)
        self.floor_ratio = float(floor_ratio)

    @classmethod
    def fit(cls, x: torch.Tensor, floor_ratio: float = 0.1) -> Standardizer:
        """Fit on training rows x: [N, D] (N >= 2)."""
        x = torch.as_tensor(x).to(torch.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise DataError(f"standardizer needs at least 2 rows of shape [N, D]; got {tuple(x.shape)}")
        std = x.std(dim=0, unbiased=True)
        floor = floor_ratio * std.median()
        if floor <= 0:
            raise DataError("standardizer: median per-dimension std is 0; the training set is constant")
        return cls(x.mean(dim=0), std.clamp_min(floor), floor_ratio, std)

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return int(self.mean.shape[0])

    @property
    def floored_dims(self) -> torch.Tensor:
        """Indices of dimensions whose std was raised to the floor."""
        return torch.nonzero(self.raw_std < self.scale, as_tuple=False).flatten()

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DataError(f"expected embeddings of shape [N, {self.dim}]; got {tuple(x.shape)}")

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Original -> standardised. x: [N, D]."""
        self._check(x)
        mean, scale = self.mean.to(x.device), self.scale.to(x.device)
        return ((x.to(torch.float64) - mean) / scale).to(x.dtype)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised -> original. z: [N, D]."""
        self._check(z)
        mean, scale = self.mean.to(z.device), self.scale.to(z.device)
        return (z.to(torch.float64) * scale + mean).to(z.dtype)

    def state_dict(self) -> dict[str, object]:
        """mean, scale, raw_std (float64 [D]) and floor_ratio: what a checkpoint stores."""
        return {"mean": self.mean, "scale": self.scale, "raw_std": self.raw_std, "floor_ratio": self.floor_ratio}

    @classmethod
    def from_state_dict(cls, state: dict[str, object]) -> Standardizer:
        """Inverse of :meth:`state_dict`; CheckpointError when a key is missing."""
        missing = {"mean", "scale", "raw_std", "floor_ratio"} - set(state)
        if missing:
            raise CheckpointError(f"standardizer statistics lack {', '.join(sorted(missing))}")
        return cls(state["mean"], state["scale"], state["floor_ratio"], state["raw_std"])

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (torch format)."""
        from flowstudy.io import atomic_torch_save

        atomic_torch_save(self.state_dict(), Path(path))

    @classmethod
    def load(cls, path: str | Path) -> Standardizer:
        """Read a standardizer written by :meth:`save`."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"{path}: cannot read standardizer statistics: {err}") from err
        return cls.from_state_dict(state)
