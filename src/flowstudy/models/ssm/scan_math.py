"""Scalar maths shared by the Triton selective scan's kernels (flowstudy.models.ssm.triton_scan)
and its Gluon backward (flowstudy.models.ssm.gluon_scan), which compiles them as Gluon functions."""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)


@triton.jit
def _exp2(x, FAST: tl.constexpr):
    """2^x. FAST (fp32 on CUDA): one MUFU.EX2 with denormal results flushed to zero, where
    tl.exp2 adds a range check and two rescaling multiplies per element."""
    if FAST:
        return tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    return tl.exp2(x)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|); log1p(e) = log(w) e / (w - 1), w = 1 + e,
    is accurate to a few ulp (Goldberg 1991), where log(1 + e) alone loses all digits of
    small e (delta biases sit near softplus^-1(1e-3))."""
    e = tl.exp(-tl.abs(x))
    w = 1.0 + e
    one = w == 1.0
    lp = tl.where(one, e, tl.log(w) * (e / tl.where(one, 1.0, w - 1.0)))
    return tl.maximum(x, 0.0) + lp


@triton.jit
def _rows(pid, rows_per_member, chunks_per_member, rows_per_prog, MEMBERS: tl.constexpr):
    """(member, first row, end row) of row chunk pid: each member's rows_per_member rows are cut
    into chunks_per_member chunks of rows_per_prog rows, so no chunk straddles two members.
    Without MEMBERS (every row shares A, D, bias) the unbatched kernel's code: member 0."""
    if MEMBERS:
        member = pid // chunks_per_member
        row0 = member * rows_per_member + (pid - member * chunks_per_member) * rows_per_prog
        row1 = tl.minimum(row0 + rows_per_prog, (member + 1) * rows_per_member)
    else:
        member = 0
        row0 = pid * rows_per_prog
        row1 = tl.minimum(row0 + rows_per_prog, rows_per_member)
    return member, row0, row1
