"""The Triton kernel of :mod:`flowstudy.train.flat_update` (imported only where it runs: importing
the trainer never imports triton)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _lerp(a, b, w):
    """torch.lerp's two forms: a + w (b - a) for w < 1/2, else b - (b - a)(1 - w)."""
    return tl.where(w < 0.5, a + w * (b - a), b - (b - a) * (1.0 - w))


@triton.jit
def adamw_ema_kernel(p_ptr, g_ptr, m_ptr, v_ptr, e_ptr, s_ptr, P, decayed, beta1, beta2, eps, BLOCK: tl.constexpr):
    """Grid (column blocks, members): one block of one member's row of the [K, P] state; s_ptr
    holds the members' [K, 5] scalars (flat_update.SCALARS)."""
    k = tl.program_id(1).to(tl.int64)
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < P
    at = k * P + cols
    coef, decay = tl.load(s_ptr + k * 5), tl.load(s_ptr + k * 5 + 1)
    step, bias2, w = tl.load(s_ptr + k * 5 + 2), tl.load(s_ptr + k * 5 + 3), tl.load(s_ptr + k * 5 + 4)
    g = tl.load(g_ptr + at, mask=mask, other=0.0) * coef
    p = tl.load(p_ptr + at, mask=mask, other=0.0)
    p = tl.where(cols < decayed, p * decay, p)
    m = _lerp(tl.load(m_ptr + at, mask=mask, other=0.0), g, 1.0 - beta1)
    v = tl.load(v_ptr + at, mask=mask, other=0.0) * beta2 + (1.0 - beta2) * (g * g)
    p = p + tl.div_rn(m, tl.div_rn(tl.sqrt_rn(v), bias2) + eps) * -step
    e = _lerp(tl.load(e_ptr + at, mask=mask, other=0.0), p, w)
    tl.store(p_ptr + at, p, mask=mask)
    tl.store(m_ptr + at, m, mask=mask)
    tl.store(v_ptr + at, v, mask=mask)
    tl.store(e_ptr + at, e, mask=mask)
