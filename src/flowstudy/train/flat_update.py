"""A stacked group's clipped AdamW and EMA step over its flat [K, P] state: torch ops, or one Triton kernel.

:class:`flowstudy.train.stacked.StackedGroup` keeps each member's weights, AdamW moments and EMA
as rows of [K, P] tensors (:class:`FlatStack`). The torch update (:func:`torch_adamw_ema_`, the
reference path, and the path wherever Triton does not run) runs about a dozen passes over them
(clip, decay, two moment updates, the denominator, the step, the EMA); on a GPU these passes are
memory-bound and, in a stacked MLP group, most of the step's bytes (``python
benchmarks/bytes_per_step.py --arch mlp --members 16``). The kernel reads the gradient, weights,
moments and EMA once and writes the last four once, with the same arithmetic per element as
the torch update, so the two agree to rounding:

    g = coef g;   p = decay p (decayed columns);   m = lerp(m, g, 1 - beta1)
    v = beta2 v + (1 - beta2) g^2;   p = p - step (m / (sqrt(v) / bias2 + eps));   e = lerp(e, p, w)

where per member coef is the clipping factor, decay = 1 - lr wd, step = lr / (1 - beta1^t),
bias2 = sqrt(1 - beta2^t) and w the EMA weight (torch's lerp: its two forms either side of 1/2).
It runs on CUDA with Triton (the kernel: flowstudy.train.triton_update), and on CPU in Triton's
interpreter (TRITON_INTERPRET=1, tests).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from flowstudy.errors import ConfigError

__all__ = ["SCALARS", "FlatStack", "flat_adamw_ema_", "flat_update_available", "torch_adamw_ema_"]

SCALARS = ("coef", "decay", "step", "bias2", "ema_weight")
"""The columns of the per-member [K, 5] scalars tensor, in order."""

BLOCK = 1024


class FlatStack:
    """The K members' parameter tensors [K, *shape_i] as consecutive columns of one [K, P] tensor.

    One tensor makes the group's clipping, AdamW and EMA a few kernels per step instead of a few
    per parameter tensor (a Mamba network has ~120 of them: on CPU its 3-member group step went
    from 3,941 to 2,032 ops, benchmarks/bench_stacked_ops.py). The step's network reads
    :meth:`views` of the flat weights as its parameters (leaves sharing the storage); their
    gradients are concatenated into a kept [K, P] buffer, one kernel and no new allocation.
    """

    def __init__(self, like: Sequence[Tensor], members: int):
        dtypes = {t.dtype for t in like}
        if len(dtypes) > 1:
            raise ConfigError(f"a stacked group keeps its parameters in one flat tensor of one dtype; got {sorted(map(str, dtypes))}")
        self.K, self.shapes = members, [tuple(t.shape) for t in like]
        self.sizes = [t.numel() for t in like]

    def pack(self, tensors: Sequence[Tensor]) -> Tensor:
        """[K, *shape_i] tensors -> a new [K, P] tensor."""
        return torch.cat([t.detach().reshape(self.K, -1) for t in tensors], dim=1)

    def views(self, flat: Tensor) -> list[Tensor]:
        """[K, P] -> [K, *shape_i] views of it (differentiable when ``flat`` requires grad)."""
        return [part.view(self.K, *shape) for part, shape in zip(flat.split(self.sizes, dim=1), self.shapes)]


def torch_adamw_ema_(
    weights: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, ema: Tensor, scalars: Tensor,
    decayed: int, beta1: float, beta2: float, eps: float, scratch: Tensor | None = None,
) -> None:
    """:func:`flat_adamw_ema_`'s update in torch ops, in place (``grad`` is clipped in place too):
    torch.optim.AdamW's arithmetic (amsgrad off) on [K, P] rows with [K] scalars. ``scratch``: a
    [K, P] buffer for the denominator (a new one when None)."""
    coef, decay, step, bias2, w = (scalars[:, i].to(weights.dtype)[:, None] for i in range(len(SCALARS)))  # [K, 1] each
    grad.mul_(coef)
    if decayed:
        weights[:, :decayed].mul_(decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = torch.sqrt(exp_avg_sq, out=scratch if scratch is not None else torch.empty_like(weights)).div_(bias2).add_(eps)
    weights.add_(torch.div(exp_avg, denom, out=denom).mul_(-step))
    ema.lerp_(weights, w)  # ema += w (p - ema)


def flat_update_available(weights: Tensor) -> bool:
    """Whether :func:`flat_adamw_ema_` runs for these weights: fp32, and CUDA with Triton (or
    Triton's interpreter on CPU)."""
    from flowstudy.models.ssm.backend import interpreted, triton_status

    if weights.dtype != torch.float32 or not triton_status()[0]:
        return False
    return weights.is_cuda or interpreted()


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
