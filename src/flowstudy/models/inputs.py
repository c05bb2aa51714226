"""Input checks shared by every velocity network: x is [B, D], t becomes [B]."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

__all__ = ["check_chunks", "check_x", "normalize_time", "prepare_inputs"]


def check_x(x: Tensor, input_dim: int) -> None:
    """Raise ValueError unless x is a floating [B, input_dim] tensor."""
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape [B, {input_dim}]; got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != input_dim:
        raise ValueError(f"x must have shape [B, D] with D={input_dim}; got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor; got {x.dtype}")


def normalize_time(t: float | Tensor, batch: int, like: Tensor) -> Tensor:
    """Turn t (a float, a 0-d tensor, [B] or [B, 1]) into a [B] tensor on like's device/dtype.

    Raises ValueError for any other shape, e.g. (B, 2) or a wrong batch size.
    """
    if isinstance(t, numbers.Real) and not isinstance(t, bool):
        return torch.full((batch,), float(t), device=like.device, dtype=like.dtype)
    if not isinstance(t, Tensor):
        raise ValueError(f"t must be a float or a tensor of shape [B] or [B, 1]; got {type(t).__name__}")
    if t.dim() == 0:
        return t.to(device=like.device, dtype=like.dtype).expand(batch)
    if t.shape == (batch,) or t.shape == (batch, 1):
        return t.to(device=like.device, dtype=like.dtype).reshape(batch)  # [B]
    raise ValueError(
        f"t must be a float or have shape [B] or [B, 1] with B={batch}; got {tuple(t.shape)}"
    )


def prepare_inputs(x: Tensor, t: float | Tensor, input_dim: int) -> tuple[Tensor, Tensor]:
    """Check x ([B, D]) and normalise t to [B]; returns (x, t)."""
    check_x(x, input_dim)
    return x, normalize_time(t, x.shape[0], x)


def check_chunks(input_dim: int, chunk_size: int, arch: str) -> None:
    """ConfigError unless ``chunk_size`` divides ``input_dim`` (a token network's L = D / chunk_size),
    naming the sizes that would: "at D = 50 use chunk_size 1, 2, 5, 10, 25 or 50"."""
    from flowstudy.errors import ConfigError

    if isinstance(chunk_size, int) and chunk_size >= 1 and input_dim % chunk_size == 0:
        return
    sizes = [c for c in range(1, input_dim + 1) if input_dim % c == 0]
    listed = ", ".join(map(str, sizes[:-1])) + f" or {sizes[-1]}" if len(sizes) > 1 else str(sizes[0])
    raise ConfigError(
        f"{arch}: chunk_size must divide input_dim; got input_dim={input_dim}, chunk_size={chunk_size}; "
        f"at D = {input_dim} use chunk_size {listed} (e.g. --model-opt chunk_size={_nearest(sizes, chunk_size)})"
    )


def _nearest(sizes: list[int], chunk_size: object) -> int:
    """The divisor closest to the requested chunk size (the largest when that is not a number)."""
    if not isinstance(chunk_size, (int, float)) or chunk_size < 1:
        return sizes[-1]
    return min(sizes, key=lambda c: (abs(c - chunk_size), -c))
