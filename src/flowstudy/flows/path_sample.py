"""The training sample a flow method draws: a point on a probability path and its target."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class PathSample:
    """One batch of conditional-path points.

    Attributes
    ----------
    t: [B] times in [0, 1] (t = 0 noise, t = 1 data).
    x_t: [B, D] points on the path at ``t``.
    u_t: [B, D] regression target for the velocity network at ``(x_t, t)``.
    x0: [B, D] noise (source) rows after the coupling.
    x1: [B, D] data (target) rows after the coupling, paired row by row with ``x0``.
    """

    t: Tensor
    x_t: Tensor
    u_t: Tensor
    x0: Tensor
    x1: Tensor
