"""Interpolant paths between noise x0 and data x1: the pure maths of a flow method.

Every path here is a stochastic interpolant (Albergo & Vanden-Eijnden 2023, "Stochastic
Interpolants: A Unifying Framework for Flows and Diffusions")

    x_t = alpha(t)·x1 + beta(t)·x0 + gamma(t)·z,        z ~ N(0, I),
    u_t = alpha'(t)·x1 + beta'(t)·x0 + gamma'(t)·z,

with alpha(0) = 0, alpha(1) = 1, beta(0) = 1, beta(1) = 0. The target u_t is the time
derivative of x_t at fixed (x0, x1, z); its conditional mean E[u_t | x_t = x] is the
probability-flow drift b(t, x), whose ODE carries the noise marginal to the data marginal.

Loss scale. Paths differ in how large u_t is, so raw losses do not compare. Each path has
``loss_weight = 2 / E_t[alpha'^2 + beta'^2 + gamma'^2]`` (t ~ U[0, 1]): for independent
standard x0, x1, z it makes loss_weight·E|u_t|^2 / D = 2, the value of the straight path
(E|x1 - x0|^2 / D = 2), so the straight path has weight 1 and weighted losses of all paths
sit on one scale. The expectation is under uniform t whatever time sampler is used.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from flowstudy.errors import ConfigError


@dataclass(frozen=True)
class PathCoefficients:
    """alpha, beta, gamma and their time derivatives at t; each [B] (or t's shape)."""

    alpha: Tensor
    beta: Tensor
    gamma: Tensor
    d_alpha: Tensor
    d_beta: Tensor
    d_gamma: Tensor


class InterpolantPath(ABC):
    """x_t = alpha(t)·x1 + beta(t)·x0 + gamma(t)·z and its velocity u_t (module docstring)."""

    @abstractmethod
    def coefficients(self, t: Tensor) -> PathCoefficients:
        """Schedule values at ``t`` (any shape, usually [B])."""

    @property
    @abstractmethod
    def needs_noise(self) -> bool:
        """True when gamma is not identically zero, so z must be drawn."""

    def interpolate(self, x0: Tensor, x1: Tensor, t: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(x_t, u_t)``, both [B, D], from x0, x1, z: [B, D] and t: [B].

        ``z`` is required when :attr:`needs_noise`, and ignored otherwise.
        """
        if self.needs_noise and z is None:
            raise ValueError(f"{type(self).__name__} has a noise term: pass z with x1's shape {tuple(x1.shape)}")
        c = self.coefficients(t[:, None])  # [B, 1] each, broadcast over D
        x_t = c.alpha * x1 + c.beta * x0
        u_t = c.d_alpha * x1 + c.d_beta * x0
        if self.needs_noise:
            x_t = x_t + c.gamma * z
            u_t = u_t + c.d_gamma * z
        return x_t, u_t

    @cached_property
    def loss_weight(self) -> float:
        """2 / E_t[alpha'^2 + beta'^2 + gamma'^2], t ~ U[0, 1] (64-point Gauss–Legendre)."""
        nodes, weights = np.polynomial.legendre.leggauss(64)
        t = torch.as_tensor((nodes + 1.0) / 2.0, dtype=torch.float64)  # [64] mapped to [0, 1]
        c = self.coefficients(t)
        speed2 = c.d_alpha**2 + c.d_beta**2 + c.d_gamma**2  # [64]
        mean_speed2 = float((speed2 * torch.as_tensor(weights / 2.0)).sum())
        return 2.0 / mean_speed2


def _check_nonnegative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be a finite number >= 0; got {value!r}")


@dataclass(frozen=True)
class Straight(InterpolantPath):
    """I-CFM path (Tong et al. 2023): x_t = (1 - t)·x0 + t·x1 + sigma·z, u_t = x1 - x0.

    The constant noise sigma blurs the path without entering the target (its derivative is
    zero); sigma = 0 gives the rectified-flow / CFM straight line. loss_weight = 1.
    """

    sigma: float = 0.0

    def __post_init__(self) -> None:
        _check_nonnegative("sigma", self.sigma)

    @property
    def needs_noise(self) -> bool:
        return self.sigma > 0

    def coefficients(self, t: Tensor) -> PathCoefficients:
        one = torch.ones_like(t)
        return PathCoefficients(
            alpha=t, beta=1 - t, gamma=self.sigma * one, d_alpha=one, d_beta=-one, d_gamma=0 * one
        )


def _bump(t: Tensor, g: float) -> tuple[Tensor, Tensor]:
    """gamma(t) = g·t·(1 - t) and gamma'(t) = g·(1 - 2t).

    Zero at both ends (x_0 = x0, x_1 = x1) with a bounded derivative; the paper's
    sqrt(g·t·(1 - t)) has gamma' -> ±inf at the ends, hence unbounded targets there.
    """
    return g * t * (1 - t), g * (1 - 2 * t)


@dataclass(frozen=True)
class LinearInterpolant(InterpolantPath):
    """Linear stochastic interpolant: alpha = t, beta = 1 - t, gamma = g·t·(1 - t).

    With gamma = 0 it is the straight path. loss_weight = 2 / (2 + g^2/3).
    """

    gamma: float = 0.0

    def __post_init__(self) -> None:
        _check_nonnegative("gamma", self.gamma)

    @property
    def needs_noise(self) -> bool:
        return self.gamma > 0

    def coefficients(self, t: Tensor) -> PathCoefficients:
        one = torch.ones_like(t)
        gamma, d_gamma = _bump(t, self.gamma)
        return PathCoefficients(alpha=t, beta=1 - t, gamma=gamma, d_alpha=one, d_beta=-one, d_gamma=d_gamma)


@dataclass(frozen=True)
class TrigInterpolant(InterpolantPath):
    """Trigonometric (GVP) interpolant: alpha = sin(pi·t/2), beta = cos(pi·t/2), gamma = g·t·(1 - t).

    alpha^2 + beta^2 = 1 preserves the variance of standard inputs (Ma et al. 2024, SiT).
    loss_weight = 2 / (pi^2/4 + g^2/3).
    """

    gamma: float = 0.0

    def __post_init__(self) -> None:
        _check_nonnegative("gamma", self.gamma)

    @property
    def needs_noise(self) -> bool:
        return self.gamma > 0

    def coefficients(self, t: Tensor) -> PathCoefficients:
        angle = 0.5 * math.pi * t
        gamma, d_gamma = _bump(t, self.gamma)
        return PathCoefficients(
            alpha=torch.sin(angle),
            beta=torch.cos(angle),
            gamma=gamma,
            d_alpha=0.5 * math.pi * torch.cos(angle),
            d_beta=-0.5 * math.pi * torch.sin(angle),
            d_gamma=d_gamma,
        )


PATHS: dict[str, type[InterpolantPath]] = {
    "straight": Straight,
    "linear": LinearInterpolant,
    "trig": TrigInterpolant,
}
"""Path name -> class; options are the class's dataclass fields."""
