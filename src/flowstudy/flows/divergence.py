"""Divergence of a velocity field, tr(∂v/∂x), exactly or by Hutchinson's estimator.

The instantaneous change of variables (Chen et al. 2018; Grathwohl et al. 2019, "FFJORD") needs
div v along the ODE: :mod:`flowstudy.metrics.likelihood` integrates it for held-out NLL, and
:meth:`flowstudy.flows.subspace.SubspaceResidual.divergence` computes its structured form with
the same vector-Jacobian products (:class:`Jacobian`).

- ``divergence_exact``: Σ_j e_jᵀ (∂v/∂x) e_j from D vector-Jacobian products with the basis
  vectors, vmapped in chunks (memory ~ chunk·B·D);
- ``divergence_hutchinson``: εᵀ (∂v/∂x) ε for Rademacher probes ε (Hutchinson 1989), unbiased,
  one backward pass per probe.

Rows must not interact: every velocity network here maps rows independently.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowstudy.solvers import VelocityFn

DEFAULT_CHUNK = 128
"""Basis vectors per vmap batch of the exact divergence."""


def is_functorch_refusal(err: RuntimeError) -> bool:
    """torch.func cannot transform an autograd.Function without ``setup_context`` (e.g. the
    hand-written backward of the Mamba scan)."""
    return "autograd.Function" in str(err)


class Jacobian:
    """v(x, t) and batched vector-Jacobian products uᵀ ∂v/∂x, u: [C, B, D] -> [C, B, D].

    ``functional``: torch.func (vjp, vmapped over the C cotangents: one batched backward).
    Otherwise, for networks torch.func refuses (old-style autograd Functions, such as mamba_ssm's
    fused scan): the rows
    repeated C times, one forward and one plain-autograd backward of the [C·B, D] batch. Rows
    do not interact, so row c·B + i holds cotangent c of row i; a loop of C backward passes would
    give the same numbers at C times the kernel launches.
    """

    def __init__(self, velocity_fn: VelocityFn, x: Tensor, t: Tensor, functional: bool) -> None:
        from torch.func import vjp

        self.functional, self._fn, self._x, self._t = functional, velocity_fn, x, t
        if functional:
            with torch.enable_grad():
                self.v, self._vjp = vjp(lambda y: velocity_fn(y, t), x)
        else:
            with torch.no_grad():
                self.v = velocity_fn(x, t)

    def __call__(self, u: Tensor) -> Tensor:
        from torch.func import vmap

        u = u.to(self.v.dtype)
        with torch.enable_grad():
            if self.functional:
                return vmap(self._vjp)(u)[0]
            c, b = u.shape[:2]
            y = self._x.detach().repeat(c, *([1] * (self._x.ndim - 1))).requires_grad_(True)  # [C·B, D]
            t = self._t.repeat(c) if self._t.ndim == 1 and self._t.shape[0] == b else self._t
            v = self._fn(y, t)
            return torch.autograd.grad(v, y, u.reshape(c * b, *u.shape[2:]))[0].reshape(u.shape[0], b, *self._x.shape[1:])


def divergence_exact(
    velocity_fn: VelocityFn, x: Tensor, t: Tensor, chunk: int = DEFAULT_CHUNK, functional: bool = True
) -> tuple[Tensor, Tensor]:
    """v(x, t) [B, D] and its exact divergence tr(∂v/∂x) [B], D basis VJPs in chunks of ``chunk``.

    Rows must not interact (every velocity network here maps rows independently).
    ``functional=False``: plain autograd, one backward per basis vector (see :class:`Jacobian`).
    """
    b, d = x.shape
    jac = Jacobian(velocity_fn, x, t, functional)
    div = torch.zeros(b, dtype=jac.v.dtype, device=x.device)
    # No index tensors: a CUDA graph records this loop (GraphSolves), and an index built on the host
    # would be a host-to-device copy during capture.
    eye = torch.eye(d, dtype=jac.v.dtype, device=x.device)
    for start in range(0, d, chunk):
        end = min(d, start + chunk)
        basis = eye[start:end, None, :].expand(end - start, b, d)  # [C, B, D]: e_j for every row
        rows = jac(basis)  # [C, B, D]: e_jᵀ J per row
        div += torch.diagonal(rows[:, :, start:end], dim1=0, dim2=2).sum(-1)  # sum_j J_jj
    return jac.v.detach(), div.detach()


def divergence_hutchinson(
    velocity_fn: VelocityFn, x: Tensor, t: Tensor, probes: Tensor, functional: bool = True
) -> tuple[Tensor, Tensor]:
    """v(x, t) [B, D] and εᵀ (∂v/∂x) ε [K, B] for probes ε: [K, B, D]."""
    jac = Jacobian(velocity_fn, x, t, functional)
    rows = jac(probes)  # [K, B, D]: εᵀ J
    return jac.v.detach(), (rows * probes).sum(-1).detach()


def rademacher(k: int, b: int, d: int, generator: torch.Generator, device: torch.device | str) -> Tensor:
    """[K, B, D] of ±1 (float32), drawn on the CPU from ``generator`` for reproducibility."""
    signs = torch.randint(0, 2, (k, b, d), generator=generator, dtype=torch.int8)
    return (2.0 * signs.float() - 1.0).to(device)


__all__ = ["DEFAULT_CHUNK", "Jacobian", "divergence_exact", "divergence_hutchinson", "is_functorch_refusal", "rademacher"]
