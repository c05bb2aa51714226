"""Triton causal depthwise convolution fused with SiLU, for the Mamba layers' short sequences.

In [B, L, d] layout (any strides), for every row b, step t and channel c, with a kernel of k taps:

    pre_t = bias + sum_j w_j x_{t-k+1+j}      (x_s = 0 for s < 0)
    out_t = silu(pre_t) = pre_t sigmoid(pre_t)

The PyTorch path (:func:`flowstudy.models.ssm.branch.causal_conv_blc` and ``F.silu``) makes a
pass over [B, L, d] per tap and per step of its backward: in a 3-member Mamba group step its
ops move about 47 % of the bytes outside matrix products (``python benchmarks/bytes_per_step.py
--arch mamba --members 3 --by-part``). Here the forward reads x once and writes out; the
backward reads x and the output's gradient once and writes dx, recomputing pre in registers
(shifted reloads of a row's tile hit the cache, not memory).

One program (one warp) owns a run of batch rows and 32 channels, a thread one channel's whole
sequence (L <= 128): the k shifted inputs are [L, 32] tiles read again at each tap (from the
cache). Backward: with gp_t = g_t silu'(pre_t),

    dx_s = sum_j w_j gp_{s+k-1-j};   dw_j = sum_{b,t} gp_t x_{t-k+1+j};   dbias = sum_{b,t} gp_t

gp is stored in dx's memory and read back at the k shifts before dx overwrites it. Compiled for
sm_90 (``python benchmarks/bench_scan.py --sass conv_fwd:32:1 conv_bwd:32:1``) the forward runs 42
and the backward 82 instructions per output element, without spills (a first version, which
recomputed the shifted pre-activations from [L, k, 64] tiles in 4 warps, ran 96 and 357).

dw and dbias are summed over a program's rows in registers and over programs by torch (no
atomics: deterministic). Under torch.func.vmap the K members fold into the batch rows
(torch_scan.MemberFold) with w [K, d, k] and bias [K, d]; a program's rows lie in one member.
On CPU the kernels run in Triton's interpreter when TRITON_INTERPRET=1 is set before triton is
imported (slow; for tests).
"""

from __future__ import annotations

from typing import List, Optional  # the custom operators' schemas (torch infers them from these)

import torch
import triton
import triton.language as tl
from torch import Tensor

from flowstudy.errors import ConfigError
from flowstudy.models.ssm.torch_scan import MemberFold, gradients_function, members_of
from flowstudy.models.ssm.scan_math import _rows
from flowstudy.models.ssm.triton_scan import MAX_SEQLEN, _apply, _compiling, _member_stride, _per_member_sum

__all__ = ["causal_conv_silu_triton"]

_PARAMS = {1: 2, 2: 1}  # w [d, k], bias [d]: positions and dimensions without a member axis


@triton.jit
def _tile(ptr, row, s_b, s_l, s_d, offs_t, offs_d, m_d, seqlen, shift):
    """[L, BLOCK_D] tile of a row at steps t + shift (0 outside the sequence), fp32."""
    src = offs_t + shift
    m = (src >= 0) & (src < seqlen)
    return tl.load(ptr + row * s_b + src[:, None] * s_l + offs_d[None, :] * s_d,
                   mask=m[:, None] & m_d[None, :], other=0.0).to(tl.float32)


@triton.jit
def _tap(w_ptr, member, sw_m, sw_d, sw_k, offs_d, m_d, j):
    """Tap j of the member's kernel: [BLOCK_D], fp32."""
    return tl.load(w_ptr + member * sw_m + j * sw_k + offs_d * sw_d, mask=m_d, other=0.0).to(tl.float32)


@triton.jit
def _pre(x_ptr, w_ptr, bias, member, row, sx_b, sx_l, sx_d, sw_m, sw_d, sw_k, offs_t, offs_d, m_d, seqlen,
         HAS_BIAS: tl.constexpr, K: tl.constexpr):
    """The row's pre-activation, bias + sum_j w_j x_{t-K+1+j}: [L, BLOCK_D], fp32."""
    pre = tl.zeros([offs_t.shape[0], offs_d.shape[0]], dtype=tl.float32)
    if HAS_BIAS:
        pre += bias[None, :]
    for j in tl.static_range(K):
        pre += _tile(x_ptr, row, sx_b, sx_l, sx_d, offs_t, offs_d, m_d, seqlen, j - K + 1) * \
            _tap(w_ptr, member, sw_m, sw_d, sw_k, offs_d, m_d, j)[None, :]
    return pre


@triton.jit
def _conv_silu_fwd_kernel(
    x_ptr, w_ptr, bias_ptr, out_ptr,
    rows_per_member, chunks_per_member, dim, seqlen, rows_per_prog,
    sx_b, sx_l, sx_d, so_b, so_l, so_d, sw_m, sw_d, sw_k, sb_m,
    HAS_BIAS: tl.constexpr, K: tl.constexpr, L_PAD: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid (row chunks, channel blocks): out = silu(conv(x) + bias) for the chunk's rows."""
    member, row0, row1 = _rows(tl.program_id(0).to(tl.int64), rows_per_member, chunks_per_member, rows_per_prog, True)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_t = tl.arange(0, L_PAD)
    m_d = offs_d < dim
    bias = tl.load(bias_ptr + member * sb_m + offs_d, mask=m_d, other=0.0).to(tl.float32) if HAS_BIAS else None
    m_out = (offs_t[:, None] < seqlen) & m_d[None, :]
    for row in range(row0, row1):
        pre = _pre(x_ptr, w_ptr, bias, member, row, sx_b, sx_l, sx_d, sw_m, sw_d, sw_k, offs_t, offs_d, m_d, seqlen, HAS_BIAS, K)
        out = pre / (1.0 + tl.exp(-pre))
        tl.store(out_ptr + row * so_b + offs_t[:, None] * so_l + offs_d[None, :] * so_d,
                 out.to(out_ptr.dtype.element_ty), mask=m_out)


@triton.jit
def _conv_silu_bwd_kernel(
    x_ptr, w_ptr, bias_ptr, g_ptr, dx_ptr, dw_part, dbias_part,
    rows_per_member, chunks_per_member, dim, seqlen, rows_per_prog,
    sx_b, sx_l, sx_d, sg_b, sg_l, sg_d, sdx_b, sdx_l, sdx_d, sw_m, sw_d, sw_k, sb_m,
    HAS_BIAS: tl.constexpr, K: tl.constexpr, K_PAD: tl.constexpr, L_PAD: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Grid (row chunks, channel blocks): dx for the chunk's rows; dw_part [chunks, K_PAD, d]
    and dbias_part [chunks, d] hold the chunk's sums. gp = g silu'(pre) goes through dx's own
    memory (this program's rows and channels only): stored, then read back at the K shifts."""
    pid_r = tl.program_id(0).to(tl.int64)
    member, row0, row1 = _rows(pid_r, rows_per_member, chunks_per_member, rows_per_prog, True)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_t, offs_j = tl.arange(0, L_PAD), tl.arange(0, K_PAD)
    m_d = offs_d < dim
    m_td = (offs_t[:, None] < seqlen) & m_d[None, :]
    bias = tl.load(bias_ptr + member * sb_m + offs_d, mask=m_d, other=0.0).to(tl.float32) if HAS_BIAS else None
    dw_acc = tl.zeros([K_PAD, BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for row in range(row0, row1):
        pre = _pre(x_ptr, w_ptr, bias, member, row, sx_b, sx_l, sx_d, sw_m, sw_d, sw_k, offs_t, offs_d, m_d, seqlen, HAS_BIAS, K)
        g = _tile(g_ptr, row, sg_b, sg_l, sg_d, offs_t, offs_d, m_d, seqlen, 0)
        sig = 1.0 / (1.0 + tl.exp(-pre))
        gp = tl.where(m_td, g * sig * (1.0 + pre * (1.0 - sig)), 0.0)  # [L, BLOCK_D]
        dbias_acc += tl.sum(gp, axis=0)
        for j in tl.static_range(K):  # dw_j = sum_t gp_t x_{t-K+1+j}
            part = tl.sum(gp * _tile(x_ptr, row, sx_b, sx_l, sx_d, offs_t, offs_d, m_d, seqlen, j - K + 1), axis=0)
            dw_acc += tl.where(offs_j[:, None] == j, part[None, :], 0.0)
        dx_row = dx_ptr + row * sdx_b + offs_t[:, None] * sdx_l + offs_d[None, :] * sdx_d
        tl.store(dx_row, gp.to(dx_ptr.dtype.element_ty), mask=m_td)
        tl.debug_barrier()
        dx = tl.zeros([L_PAD, BLOCK_D], dtype=tl.float32)
        for i in tl.static_range(K):  # dx_t = sum_i w_{K-1-i} gp_{t+i}
            dx += _tile(dx_ptr, row, sdx_b, sdx_l, sdx_d, offs_t, offs_d, m_d, seqlen, i) * \
                _tap(w_ptr, member, sw_m, sw_d, sw_k, offs_d, m_d, K - 1 - i)[None, :]
        tl.debug_barrier()
        tl.store(dx_row, dx.to(dx_ptr.dtype.element_ty), mask=m_td)
    tl.store(dw_part + pid_r * K_PAD * dim + offs_j[:, None] * dim + offs_d[None, :], dw_acc, mask=m_d[None, :])
    tl.store(dbias_part + pid_r * dim + offs_d, dbias_acc, mask=m_d)


def _launch(x: Tensor, w: Tensor, bias: Tensor | None) -> tuple[int, int, int, int, int, int, tuple[int, int]]:
    """(members, rows a member, rows a program, chunks a member, BLOCK_D, L_PAD, grid) of a call."""
    batch, seqlen, dim = x.shape
    members = members_of(batch, {"w": (w, 2), "bias": (bias, 1)}, "causal conv")
    per_member = batch // members
    rows = max(1, min(8, per_member // 64))
    chunks = triton.cdiv(per_member, rows)
    block_d = min(32, triton.next_power_of_2(dim))  # one warp: a thread owns a channel's sequence
    grid = (members * chunks, triton.cdiv(dim, block_d))
    return members, per_member, rows, chunks, block_d, triton.next_power_of_2(seqlen), grid


def _forward(x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    _, per_member, rows, chunks, block_d, l_pad, grid = _launch(x, w, bias)
    _, seqlen, dim = x.shape
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    _conv_silu_fwd_kernel[grid](
        x, w, x if bias is None else bias, out, per_member, chunks, dim, seqlen, rows,
        *x.stride(), *out.stride(), _member_stride(w, 2), w.stride(-2), w.stride(-1), _member_stride(bias, 1),
        HAS_BIAS=bias is not None, K=w.shape[-1], L_PAD=l_pad, BLOCK_D=block_d, num_warps=1,
    )
    return out


def _gradients(x: Tensor, w: Tensor, bias: Tensor | None, g: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """(dx, dw, dbias) in the inputs' dtypes; dw and dbias per member when w and bias are. The
    intermediate gp passes through dx's memory in x's dtype (exact in fp32; bf16 rounds it, as
    the PyTorch path computes in bf16 throughout)."""
    members, per_member, rows, chunks, block_d, l_pad, grid = _launch(x, w, bias)
    _, seqlen, dim = x.shape
    k, k_pad = w.shape[-1], triton.next_power_of_2(w.shape[-1])
    dx = torch.empty_like(x, memory_format=torch.contiguous_format)
    dw_part = torch.empty(grid[0], k_pad, dim, dtype=torch.float32, device=x.device)
    dbias_part = torch.empty(grid[0], dim, dtype=torch.float32, device=x.device)
    _conv_silu_bwd_kernel[grid](
        x, w, x if bias is None else bias, g, dx, dw_part, dbias_part, per_member, chunks, dim, seqlen, rows,
        *x.stride(), *g.stride(), *dx.stride(), _member_stride(w, 2), w.stride(-2), w.stride(-1), _member_stride(bias, 1),
        HAS_BIAS=bias is not None, K=k, K_PAD=k_pad, L_PAD=l_pad, BLOCK_D=block_d, num_warps=1,
    )
    dw = _per_member_sum(dw_part, w, 2, members)[..., :k, :].transpose(-1, -2).to(w.dtype)  # [(M,) d, k]
    dbias = None if bias is None else _per_member_sum(dbias_part, bias, 1, members).to(bias.dtype)
    return dx, dw, dbias


class _ConvSilu(torch.autograd.Function):
    """x [B, L, d], w [(M,) d, k], bias [(M,) d] or None -> silu(causal conv) [B, L, d]; the
    forward keeps its inputs only."""

    @staticmethod
    def forward(x, w, bias):  # noqa: D102
        return _forward(x, w, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        x, w, bias = ctx.saved_tensors
        return _apply(_ConvSiluBackward, x, w, bias, g)

    @staticmethod
    def vmap(info, in_dims, *args):  # noqa: D102
        fold = MemberFold(info.batch_size, in_dims, args, params=_PARAMS)
        return fold.rows(_apply(_ConvSilu, *fold.args)), 0


_ConvSiluBackward = gradients_function(_gradients, "the triton causal convolution", params=_PARAMS)


# torch.compile: opaque operators in place of the Functions' graph breaks (triton_scan._scan_op)
@torch.library.custom_op("flowstudy::triton_conv_silu", mutates_args=())
def _conv_op(x: Tensor, w: Tensor, bias: Optional[Tensor]) -> Tensor:
    return _forward(x, w, bias)


@_conv_op.register_fake
def _(x, w, bias):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("flowstudy::triton_conv_silu_backward", mutates_args=())
def _conv_backward_op(x: Tensor, w: Tensor, bias: Optional[Tensor], g: Tensor) -> List[Tensor]:
    """(dx, dw, dbias); dbias an empty tensor without a bias."""
    dx, dw, dbias = _gradients(x, w, bias, g)
    return [dx, dw.contiguous(), dbias if dbias is not None else x.new_empty(0)]


@_conv_backward_op.register_fake
def _(x, w, bias, g):
    return [torch.empty_like(x, memory_format=torch.contiguous_format), w.new_empty(w.shape),
            bias.new_empty(bias.shape) if bias is not None else x.new_empty(0)]


def _conv_op_setup(ctx, inputs, output):
    ctx.has_bias = inputs[2] is not None
    ctx.save_for_backward(*inputs)


def _conv_op_backward(ctx, g):
    dx, dw, dbias = torch.ops.flowstudy.triton_conv_silu_backward(*ctx.saved_tensors, g)
    return dx, dw, dbias if ctx.has_bias else None


_conv_op.register_autograd(_conv_op_backward, setup_context=_conv_op_setup)


def causal_conv_silu_triton(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """silu(causal depthwise convolution of x) in [B, L, d] layout, any strides; L <= 128.

    x: [B, L, d]; weight: [d, k] (or a Conv1d's [d, 1, k]); bias: [d] or None -> [B, L, d] in x's
    dtype, computed in fp32. The same numbers as ``F.silu(causal_conv_blc(x, weight, bias))`` up
    to rounding (:func:`flowstudy.models.ssm.branch.causal_conv_blc`).
    """
    if weight.dim() == 3:
        weight = weight[:, 0, :]
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[2]:
        raise ValueError(f"causal conv expects x [B, L, d] and weight [d, k] (or [d, 1, k]); got {tuple(x.shape)}, {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (x.shape[2],):
        raise ValueError(f"causal conv: bias must have shape [{x.shape[2]}]; got {list(bias.shape)}")
    if x.shape[1] > MAX_SEQLEN:
        raise ConfigError(f"the triton causal convolution handles sequences of at most {MAX_SEQLEN} steps; got L={x.shape[1]}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        if _compiling():
            return _conv_op(x, weight, bias)
        return _apply(_ConvSilu, x, weight, bias)
