"""A stacked group's clipped AdamW and EMA step as one Triton kernel over its flat [K, P] state.

:class:`flowstudy.train.stacked.StackedGroup` keeps each member's weights, AdamW moments and EMA
as rows of [K, P] tensors (``FlatStack``). Its torch update runs about a dozen passes over them
(clip, decay, two moment updates, the denominator, the step, the EMA); on a GPU these passes are
memory-bound and, in a stacked MLP group, most of the step's bytes (``python
benchmarks/bytes_per_step.py --arch mlp --members 16``). The kernel reads the gradient, weights,
moments and EMA once and writes the last four once, with the same arithmetic per element as
the torch update (``StackedGroup._torch_update``), so the two agree to rounding:

    g = coef g;   p = decay p (decayed columns);   m = lerp(m, g, 1 - beta1)
    v = beta2 v + (1 - beta2) g^2;   p = p - step (m / (sqrt(v) / bias2 + eps));   e = lerp(e, p, w)

where per member coef is the clipping factor, decay = 1 - lr wd, step = lr / (1 - beta1^t),
bias2 = sqrt(1 - beta2^t) and w the EMA weight (torch's lerp: its two forms either side of 1/2).
It runs on CUDA with Triton (the kernel: flowstudy.train.triton_update), and on CPU in Triton's
interpreter (TRITON_INTERPRET=1, tests).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SCALARS", "flat_update_available", "flat_adamw_ema_"]

SCALARS = ("coef", "decay", "step", "bias2", "ema_weight")
"""The columns of the per-member [K, 5] scalars tensor, in order."""

BLOCK = 1024


def flat_update_available(weights: Tensor) -> bool:
    """Whether :func:`flat_adamw_ema_` runs for these weights: fp32, and CUDA with Triton (or
    Triton's interpreter on CPU)."""
    from flowstudy.models.ssm.backend import _interpreted, triton_status

    if weights.dtype != torch.float32 or not triton_status()[0]:
        return False
    return weights.is_cuda or _interpreted()


def flat_adamw_ema_(
    weights: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, ema: Tensor, scalars: Tensor,
    decayed: int, beta1: float, beta2: float, eps: float,
) -> None:
    """One clipped AdamW step and EMA update of K members in place; every tensor [K, P], contiguous
    fp32 on one device; ``scalars`` [K, 5] in the order of :data:`SCALARS`; the first ``decayed``
    columns take weight decay. ``grad`` is read, not written (unlike the torch update's clipping)."""
    import triton

    from flowstudy.train.triton_update import adamw_ema_kernel

    K, P = weights.shape
    for name, t in (("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq), ("ema", ema)):
        if t.shape != weights.shape or not t.is_contiguous() or t.dtype != weights.dtype:
            raise ValueError(f"flat update: {name} must be a contiguous {weights.dtype} [K, P] = {list(weights.shape)}; got {t.dtype} {list(t.shape)}")
    if not weights.is_contiguous() or tuple(scalars.shape) != (K, len(SCALARS)):
        raise ValueError(f"flat update: weights must be contiguous and scalars [K, {len(SCALARS)}]; got {list(scalars.shape)}")
    scalars = scalars.to(weights.dtype).contiguous()
    adamw_ema_kernel[(triton.cdiv(P, BLOCK), K)](weights, grad, exp_avg, exp_avg_sq, ema, scalars, P, decayed, beta1, beta2, eps, BLOCK=BLOCK)
