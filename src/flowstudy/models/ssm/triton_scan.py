"""Triton selective scan for short sequences (L <= 128): forward and backward kernels.

The maths, arguments and dtypes of :func:`~flowstudy.models.ssm.selective_scan_torch`
(Gu & Dao 2023, Alg. 2), for every batch row b and channel d with a diagonal state of size N:

    delta_t = softplus(delta_t + delta_bias)                      (if delta_softplus)
    h_t     = exp(delta_t A) h_{t-1} + delta_t B_t u_t            h_{-1} = 0
    y_t     = <C_t, h_t> + D u_t;      out_t = y_t silu(z_t)      (if z is given)

One program (one warp at L = 16) owns BLOCK_D channels and a run of batch rows. For each row
the whole sequence is one register tile [L, N, BLOCK_D], the time axis inside each thread
(Triton's default layout fills lanes from the last axis: channels, then states): the states h
come from an associative scan over L (pairs (a, b) composing h -> a h + b), sequential in
registers, in fp32 whatever the input dtype; exp(delta A) is one ftz exp2 per state. The backward
recomputes the states the same way, so nothing of size [B, d, L, N] is ever stored, then
runs the adjoint recurrence as a reverse scan:

    G_t  = dL/dh_t = dy_t C_t + exp(delta_{t+1} A) G_{t+1}
    dC_t = sum_d dy_t h_t;   dB_t = sum_d G_t delta_t u_t;   d(delta_t u_t) = sum_n G_t B_t
    Q_t  = G_t exp(delta_t A) h_{t-1} = G_t (h_t - delta_t B_t u_t)
    ddelta_t += sum_n Q_t A;   dA = sum_{b,t} Q_t delta_t

On CUDA in fp32 the backward launch is, by default, the Gluon kernel of
:mod:`flowstudy.models.ssm.gluon_scan` (same maths, arguments and partial buffers; a channel's
states stepped through time in a few lanes; on an H200 1.4x faster at batch 4096 x L 16 and 1.9x
for a 9-member training group). The tile kernel below runs in float64, in the interpreter, and
where the Gluon kernel's buffers would not fit.

Sums across programs use no atomics, so results are deterministic: dA, dD and
ddelta_bias are summed over a program's rows in registers and over programs by torch;
dB and dC are summed over a program's channel blocks in its own rows of a partial buffer
(one slice per channel split) and over the splits by torch.

Under torch.func.vmap the K members fold into the batch rows (torch_scan.MemberFold): u, delta,
z, B, C become [K*B, ...] and A [K, d, N], D and delta_bias [K, d] when each member has its own.
Row chunks never straddle members: a program reads its member's A, D and bias once (member
stride 0 for one shared by the members), and dA, dD, ddelta_bias are summed per member over its
chunks' partials. Calls without per-member parameters compile with MEMBERS off, the unbatched
kernels' code (H100, graph-replayed fwd+bwd at B = 256 and 2048: the same time as before).
K = 8 members of 256 rows run in the time of one call of 2048 rows (fwd+bwd 2.52 ms against
4.62 ms for the member loop, graph-replayed; eager 2.55 against 12.4 ms).

Under torch.compile (outside torch.func transforms) the scan and its backward are custom operators
(``flowstudy::triton_selective_scan``): one graph for the whole network instead of a graph break
per layer.

Inputs may have any strides (the [B, L, d] layout of Linear outputs runs without copies).
On CPU the kernels run in Triton's interpreter when TRITON_INTERPRET=1 is set before
triton is imported (slow; for tests).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional  # the custom operators' schemas (torch infers them from these)

import torch
import triton
import triton.language as tl
from torch import Tensor

from flowstudy.errors import ConfigError
from flowstudy.models.ssm.scan_math import LOG2E, _exp2, _rows, _sigmoid, _softplus
from flowstudy.models.ssm.torch_scan import MemberFold, gradients_function, member_count

__all__ = [
    "BACKWARD_SHAPE", "MAX_SEQLEN", "ScanConfig", "default_config", "parse_backward_shape", "selective_scan_triton", "selective_scan_triton_blc",
]

MAX_SEQLEN = 128
BACKWARD_SHAPE: tuple[int, ...] | None = None
"""(channels a tile, warps, channel splits, rows a program[, lanes a channel]) of every backward
launch whose call passes no config, in place of :func:`default_config`'s; lanes > 0 takes the
Gluon backward (:attr:`ScanConfig.bwd_lanes`); None: the default. For timing launch shapes in
whole training steps (``benchmarks/profile_gpu_steps.py --scan-bwd``)."""


@triton.jit
def _combine(a1, b1, a2, b2):
    """Compose h -> a1 h + b1 (earlier) with h -> a2 h + b2 (later)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _load_ld(ptr, row, s_b, s_l, s_d, offs_t, offs_d, mask, CT: tl.constexpr):
    """One row's [L, BLOCK_D] tile of a [B, d, L] tensor with strides (s_b, s_d, s_l)."""
    p = ptr + row * s_b + offs_t[:, None] * s_l + offs_d[None, :] * s_d
    return tl.load(p, mask=mask, other=0.0).to(CT)


@triton.jit
def _delta(dt_ptr, row, s_b, s_l, s_d, offs_t, offs_d, mask, bias,
           HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, CT: tl.constexpr):
    """(pre, delta): the raw delta + bias and its discretised value, [L, BLOCK_D]."""
    pre = _load_ld(dt_ptr, row, s_b, s_l, s_d, offs_t, offs_d, mask, CT)
    if HAS_BIAS:
        pre = pre + bias[None, :]
    dl = pre
    if SOFTPLUS:
        dl = _softplus(pre)
    return pre, dl


@triton.jit
def _states(dl, x, A2, Bt, FAST: tl.constexpr):
    """dA = exp(delta A), dBu = delta u B and the states h, all [L, N, BLOCK_D].

    dl, x = delta u: [L, BLOCK_D]; A2 = A log2(e): [N, BLOCK_D]; Bt: [L, N].
    """
    dA = _exp2(dl[:, None, :] * A2[None, :, :], FAST)
    dBu = x[:, None, :] * Bt[:, :, None]
    _, h = tl.associative_scan((dA, dBu), 0, _combine)
    return dA, dBu, h


@triton.jit
def _scan_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
    rows_per_member, chunks_per_member, dim, seqlen, dstate, rows_per_prog,
    su_b, su_l, su_d, sdt_b, sdt_l, sdt_d, sz_b, sz_l, sz_d, so_b, so_l, so_d,
    sB_b, sB_l, sB_n, sC_b, sC_l, sC_n, sA_d, sA_n, sA_m, sD_m, sbias_m,
    MEMBERS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    L_PAD: tl.constexpr, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr, CT: tl.constexpr,
    FAST: tl.constexpr,
):
    """Grid (row chunks, channel blocks): out for rows_per_prog rows x BLOCK_D channels. A, D and
    bias of the chunk's member sit at member * s*_m (0 when shared by all rows)."""
    # int64 rows: row * stride may pass 2**31
    member, row0, row1 = _rows(tl.program_id(0).to(tl.int64), rows_per_member, chunks_per_member, rows_per_prog, MEMBERS)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_t = tl.arange(0, L_PAD)
    offs_n = tl.arange(0, N_PAD)
    m_d, m_n = offs_d < dim, offs_n < dstate
    m_td = (offs_t[:, None] < seqlen) & m_d[None, :]  # [L, BLOCK_D]
    m_tn = (offs_t[:, None] < seqlen) & m_n[None, :]  # [L, N]
    A2 = tl.load(A_ptr + member * sA_m + offs_n[:, None] * sA_n + offs_d[None, :] * sA_d,
                 mask=m_n[:, None] & m_d[None, :], other=0.0).to(CT) * LOG2E  # [N, BLOCK_D]
    bias = tl.load(bias_ptr + member * sbias_m + offs_d, mask=m_d, other=0.0).to(CT) if HAS_BIAS else None
    Dv = tl.load(D_ptr + member * sD_m + offs_d, mask=m_d, other=0.0).to(CT) if HAS_D else None
    for row in range(row0, row1):
        u = _load_ld(u_ptr, row, su_b, su_l, su_d, offs_t, offs_d, m_td, CT)
        _, dl = _delta(dt_ptr, row, sdt_b, sdt_l, sdt_d, offs_t, offs_d, m_td, bias,
                       HAS_BIAS, SOFTPLUS, CT)
        Bt = tl.load(B_ptr + row * sB_b + offs_t[:, None] * sB_l + offs_n[None, :] * sB_n,
                     mask=m_tn, other=0.0).to(CT)  # [L, N]
        Ct = tl.load(C_ptr + row * sC_b + offs_t[:, None] * sC_l + offs_n[None, :] * sC_n,
                     mask=m_tn, other=0.0).to(CT)
        _, _, h = _states(dl, dl * u, A2, Bt, FAST)
        y = tl.sum(h * Ct[:, :, None], axis=1)  # [L, BLOCK_D]
        if HAS_D:
            y += u * Dv[None, :]
        if HAS_Z:
            z = _load_ld(z_ptr, row, sz_b, sz_l, sz_d, offs_t, offs_d, m_td, CT)
            y = y * z * _sigmoid(z)
        tl.store(out_ptr + row * so_b + offs_t[:, None] * so_l + offs_d[None, :] * so_d, y, mask=m_td)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_part, dB_part, dC_part, dD_part, dbias_part,
    rows_per_member, chunks_per_member, dim, seqlen, dstate, rows_per_prog, ch_per_split,
    su_b, su_l, su_d, sdt_b, sdt_l, sdt_d, sz_b, sz_l, sz_d, sg_b, sg_l, sg_d,
    sdo_b, sdo_l, sdo_d, sB_b, sB_l, sB_n, sC_b, sC_l, sC_n, sA_d, sA_n, sA_m, sD_m, sbias_m,
    sp_s, sp_b, sp_l, sp_n,
    MEMBERS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    L_PAD: tl.constexpr, N_PAD: tl.constexpr, BLOCK_D: tl.constexpr, CT: tl.constexpr,
    FAST: tl.constexpr,
):
    """Grid (row chunks, channel splits), tiles [L, N, BLOCK_D]. du, ddelta, dz are written in
    the gradient layout (sg_*); dA_part, dD_part, dbias_part get one [d, N] / [d] slice per row
    chunk, dB_part and dC_part one [B, L, N] slice (strides sp_*) per channel split, summed over
    the split's channel blocks in place: a program owns its rows of its split's slice. A row chunk
    lies in one member (A, D, bias at member * s*_m), so its dA, dD, dbias partials are that
    member's alone."""
    pid_r, pid_s = tl.program_id(0).to(tl.int64), tl.program_id(1)
    member, row0, row1 = _rows(pid_r, rows_per_member, chunks_per_member, rows_per_prog, MEMBERS)
    c0 = pid_s * ch_per_split
    c1 = tl.minimum(c0 + ch_per_split, dim)
    offs_t = tl.arange(0, L_PAD)
    offs_n = tl.arange(0, N_PAD)
    m_t, m_n = offs_t < seqlen, offs_n < dstate
    m_tn = m_t[:, None] & m_n[None, :]
    m_next = (offs_t + 1 < seqlen)[:, None] & m_n[None, :]
    for d0 in range(c0, c1, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        m_d = offs_d < c1
        m_td = m_t[:, None] & m_d[None, :]
        m_td1 = (offs_t + 1 < seqlen)[:, None] & m_d[None, :]
        m_nd = m_n[:, None] & m_d[None, :]
        A = tl.load(A_ptr + member * sA_m + offs_n[:, None] * sA_n + offs_d[None, :] * sA_d,
                    mask=m_nd, other=0.0).to(CT)
        A2 = A * LOG2E
        bias = tl.load(bias_ptr + member * sbias_m + offs_d, mask=m_d, other=0.0).to(CT) if HAS_BIAS else None
        Dv = tl.load(D_ptr + member * sD_m + offs_d, mask=m_d, other=0.0).to(CT) if HAS_D else None
        dA_acc = tl.zeros([N_PAD, BLOCK_D], dtype=CT)
        dD_acc = tl.zeros([BLOCK_D], dtype=CT)
        dbias_acc = tl.zeros([BLOCK_D], dtype=CT)
        for row in range(row0, row1):
            u = _load_ld(u_ptr, row, su_b, su_l, su_d, offs_t, offs_d, m_td, CT)
            pre, dl = _delta(dt_ptr, row, sdt_b, sdt_l, sdt_d, offs_t, offs_d, m_td, bias,
                             HAS_BIAS, SOFTPLUS, CT)
            _, dl1 = _delta(dt_ptr + sdt_l, row, sdt_b, sdt_l, sdt_d, offs_t, offs_d, m_td1, bias,
                            HAS_BIAS, SOFTPLUS, CT)
            Bt = tl.load(B_ptr + row * sB_b + offs_t[:, None] * sB_l + offs_n[None, :] * sB_n,
                         mask=m_tn, other=0.0).to(CT)
            Ct = tl.load(C_ptr + row * sC_b + offs_t[:, None] * sC_l + offs_n[None, :] * sC_n,
                         mask=m_tn, other=0.0).to(CT)
            dy = _load_ld(dout_ptr, row, sdo_b, sdo_l, sdo_d, offs_t, offs_d, m_td, CT)
            x = dl * u
            _, dBu, h = _states(dl, x, A2, Bt, FAST)
            g_off = row * sg_b + offs_t[:, None] * sg_l + offs_d[None, :] * sg_d
            if HAS_Z:
                y = tl.sum(h * Ct[:, :, None], axis=1)
                if HAS_D:
                    y += u * Dv[None, :]
                z = _load_ld(z_ptr, row, sz_b, sz_l, sz_d, offs_t, offs_d, m_td, CT)
                sig = _sigmoid(z)
                tl.store(dz_ptr + g_off, dy * y * sig * (1.0 + z * (1.0 - sig)), mask=m_td)
                dy = dy * z * sig
            dC_r = tl.sum(h * dy[:, None, :], axis=2)  # [L, N]
            P = h - dBu
            a1 = tl.where(m_next[:, :, None], _exp2(dl1[:, None, :] * A2[None, :, :], FAST), 0.0)
            _, G = tl.associative_scan((a1, Ct[:, :, None] * dy[:, None, :]), 0, _combine, reverse=True)
            dB_r = tl.sum(G * x[:, None, :], axis=2)
            dx = tl.sum(G * Bt[:, :, None], axis=1)
            Q = G * P
            ddl = tl.sum(Q * A[None, :, :], axis=1) + dx * u
            dA_acc += tl.sum(Q * dl[:, None, :], axis=0)
            du = dx * dl
            if HAS_D:
                du += dy * Dv[None, :]
                dD_acc += tl.sum(dy * u, axis=0)
            if SOFTPLUS:
                ddl = ddl * _sigmoid(pre)
            dbias_acc += tl.sum(ddl, axis=0)
            tl.store(du_ptr + g_off, du, mask=m_td)
            tl.store(ddt_ptr + g_off, ddl, mask=m_td)
            p_off = pid_s * sp_s + row * sp_b + offs_t[:, None] * sp_l + offs_n[None, :] * sp_n
            if d0 > c0:  # this program's own rows of the split's slice: no other writer
                dB_r += tl.load(dB_part + p_off, mask=m_tn, other=0.0)
                dC_r += tl.load(dC_part + p_off, mask=m_tn, other=0.0)
            tl.store(dB_part + p_off, dB_r, mask=m_tn)
            tl.store(dC_part + p_off, dC_r, mask=m_tn)
        a_off = pid_r * dim * dstate + offs_n[:, None] + offs_d[None, :] * dstate
        tl.store(dA_part + a_off, dA_acc, mask=m_nd)
        if HAS_D:
            tl.store(dD_part + pid_r * dim + offs_d, dD_acc, mask=m_d)
        if HAS_BIAS:
            tl.store(dbias_part + pid_r * dim + offs_d, dbias_acc, mask=m_d)
        tl.debug_barrier()  # the next channel block re-reads dB_part/dC_part rows stored above


@dataclass(frozen=True)
class ScanConfig:
    """Launch shape: channels per tile (block_d), batch rows per program (rows), warps per
    program; bwd_splits splits the channels of the backward grid (each split adds a [B, L, N]
    partial of dB and dC that torch sums)."""

    fwd_block_d: int
    fwd_rows: int
    fwd_warps: int
    bwd_block_d: int
    bwd_rows: int
    bwd_splits: int
    bwd_warps: int
    bwd_lanes: int = 0
    bwd_maxnreg: int = 0
    """> 0: the Gluon backward (:mod:`~flowstudy.models.ssm.gluon_scan`) with this many lanes a
    channel and 32 / bwd_lanes channels a program (bwd_block_d and bwd_warps unused), where it can
    launch (CUDA, fp32 compute, see ``gluon_scan.eligible``); 0: the tile backward. bwd_maxnreg > 0
    caps the Gluon backward's registers a thread (more programs a multiprocessor, some spilled)."""


def _pow2_floor(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def _tile(lp: int, np_: int, dim: int, budget: int) -> tuple[int, int]:
    """(channels, warps) of a tile of about `budget` states. One warp a program measured
    fastest (H100, benchmarks/SCAN.md); long sequences spread their time axis over 4 warps."""
    bd = max(1, min(triton.next_power_of_2(dim), 64, _pow2_floor(budget // (lp * np_))))
    return bd, (4 if lp >= 64 else 1)


def default_config(batch: int, dim: int, seqlen: int, dstate: int, n_sm: int = 132) -> ScanConfig:
    """Launch shapes measured best at L = N = 16 on an H100 (benchmarks/SCAN.md): forward
    tiles of 2048 states (64 a thread), backward tiles of 1024 (32 a thread, its register
    limit), at least ~8 (forward) and ~15 (backward) one-warp programs per multiprocessor.

    Short sequences over many rows (L x N <= 128 and at least 32 programs of 16 rows per
    multiprocessor with 64 channels a tile, e.g. sampling 16,384 rows at L = 8) take tiles of 64
    channels: on an H200 0.76 against 0.93 ms at 16,384 rows x L 8, where 2,304 rows (1,152 such
    programs) took 0.27 against 0.14 ms (benchmarks/SCAN.md).

    The backward is the Gluon kernel with 4 lanes a channel where it can launch (CUDA, fp32 compute,
    L x N small enough), else the tile kernel of the fields above. Programs take half the rows the
    tile kernel was tuned for (its splits unchanged), which made the Gluon kernel 0.55 against 0.66
    ms for a 9-member training group. On an H200 the Gluon backward takes 2.03 against 2.82 ms
    (tile) at batch 4096 x L 16 and 0.48 against 0.89 ms for that group (benchmarks/SCAN.md)."""
    lp, np_ = triton.next_power_of_2(seqlen), triton.next_power_of_2(dstate)
    fbd, fw = _tile(lp, np_, dim, 2048)
    wide = min(64, triton.next_power_of_2(dim))
    if lp * np_ <= 128 and wide > fbd and batch * triton.cdiv(dim, wide) >= 32 * 16 * n_sm:
        fbd = wide
    f_rows = max(1, min(16, batch * triton.cdiv(dim, fbd) // (8 * n_sm)))
    bbd, bw = _tile(lp, np_, dim, 1024)
    b_rows = max(1, min(16, batch // 512))
    splits = max(1, min(triton.cdiv(dim, bbd), triton.cdiv(15 * n_sm, triton.cdiv(batch, b_rows))))
    return ScanConfig(fbd, f_rows, fw, bbd, max(1, b_rows // 2), splits, bw, bwd_lanes=4)


def parse_backward_shape(text: str) -> tuple[int, ...] | None:
    """``"BLOCK_D:WARPS:SPLITS:ROWS[:LANES]"`` -> a :data:`BACKWARD_SHAPE` tuple; ``"default"`` -> None."""
    if text == "default":
        return None
    parts = text.split(":")
    if len(parts) not in (4, 5) or not all(p.isdigit() for p in parts):
        raise ConfigError(f"a scan backward shape is BLOCK_D:WARPS:SPLITS:ROWS[:LANES] (e.g. 4:1:8:2) or 'default'; got {text!r}")
    return _checked_backward_shape(tuple(int(p) for p in parts))


def _checked_backward_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` if it can launch (see :data:`BACKWARD_SHAPE`), else a ConfigError naming it."""
    block_d, warps, splits, rows, lanes = (*shape, 0)[:5] if len(shape) in (4, 5) else (0, 0, 0, 0, 0)
    if (block_d < 1 or block_d & (block_d - 1) or warps < 1 or warps & (warps - 1)
            or splits < 1 or rows < 1 or lanes not in (0, 1, 2, 4, 8)):
        raise ConfigError(
            f"triton_scan.BACKWARD_SHAPE must be (channels, warps, splits, rows[, lanes]) with channels and warps powers "
            f"of two, splits, rows >= 1 and lanes 0 (the tile backward), 1, 2, 4 or 8; got {shape!r}"
        )
    return shape


def _with_backward_shape(cfg: ScanConfig, shape: tuple[int, ...] | None) -> ScanConfig:
    """``cfg`` with its backward fields from ``shape`` (see :data:`BACKWARD_SHAPE`)."""
    if shape is None:
        return cfg
    block_d, warps, splits, rows, lanes = (*_checked_backward_shape(shape), 0)[:5]
    return replace(cfg, bwd_block_d=block_d, bwd_warps=warps, bwd_splits=splits, bwd_rows=rows, bwd_lanes=lanes)


def _check(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D, z, delta_bias) -> None:
    """Shapes, dtypes and devices of the [B, d, L] arguments; one-line errors."""
    if u.dim() != 3 or A.dim() != 2 or B.dim() != 3:
        raise ValueError(
            f"selective scan expects u [B, d, L], A [d, N], B [B, N, L]; "
            f"got {tuple(u.shape)}, {tuple(A.shape)}, {tuple(B.shape)}"
        )
    batch, dim, seqlen = u.shape
    N = A.shape[1]
    want = {"delta": (delta, (batch, dim, seqlen)), "z": (z, (batch, dim, seqlen)),
            "A": (A, (dim, N)), "B": (B, (batch, N, seqlen)), "C": (C, (batch, N, seqlen)),
            "D": (D, (dim,)), "delta_bias": (delta_bias, (dim,))}
    for name, (t, shape) in want.items():
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"selective scan: {name} must have shape {list(shape)}; got {list(t.shape)}")
    if seqlen > MAX_SEQLEN:
        raise ConfigError(
            f"the triton selective scan handles sequences of at most {MAX_SEQLEN} steps; got L={seqlen} "
            f"(use backend='torch' or 'fused')"
        )
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                    ("delta_bias", delta_bias)):
        if t is None:
            continue
        if t.is_complex():
            raise ValueError(f"selective scan: {name} is complex; the triton scan takes real tensors")
        if t.device != u.device:
            raise ValueError(f"selective scan: {name} is on {t.device}, u on {u.device}")


def _layout_like(u: Tensor, dtype: torch.dtype) -> Tensor:
    """An empty [B, d, L] tensor whose memory order follows u's (d or L fastest)."""
    b, d, L = u.shape
    if u.stride(1) < u.stride(2):  # channels fastest: the [B, L, d] layout of a Linear
        return torch.empty(b, L, d, dtype=dtype, device=u.device).transpose(1, 2)
    return torch.empty(b, d, L, dtype=dtype, device=u.device)


def _strides(t: Tensor | None) -> tuple[int, int, int]:
    """(batch, time, channel) strides of a [B, d, L] or [B, N, L] tensor; zeros if absent."""
    if t is None:
        return (0, 0, 0)
    return (t.stride(0), t.stride(2), t.stride(1))


def _common(u: Tensor, A: Tensor, *tensors: Tensor | None):
    """Compute dtype, float64 if any input is, else float32: (Triton type, torch dtype)."""
    f64 = any(t is not None and t.dtype == torch.float64 for t in (u, A, *tensors))
    return (tl.float64 if f64 else tl.float32), (torch.float64 if f64 else torch.float32)


def _fast(u: Tensor, ct) -> bool:
    """The PTX exp2 path: fp32 compiled for CUDA (not the interpreter, not fp64)."""
    return u.is_cuda and ct == tl.float32


def _n_sm(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def _member_stride(p: Tensor | None, base: int) -> int:
    """Elements between two members' copies of a parameter; 0 when every row shares it."""
    return p.stride(0) if p is not None and p.dim() > base else 0


def _unit_channels(p: Tensor | None) -> Tensor | None:
    """D or delta_bias with unit channel stride (the kernels read them at offs_d)."""
    return p if p is None or p.stride(-1) == 1 else p.contiguous()


def _per_member_sum(part: Tensor, p: Tensor, base: int, members: int) -> Tensor:
    """Row-chunk partials [chunks, ...] summed to p's shape: over all chunks for a shared p,
    over each member's chunks (consecutive) for p [M, ...]."""
    if p.dim() == base:
        return part.sum(0)
    return part.unflatten(0, (members, -1)).sum(1)


def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, cfg: ScanConfig | None) -> Tensor:
    batch, dim, seqlen = u.shape
    N = A.shape[-1]
    if cfg is None:
        cfg = default_config(batch, dim, seqlen, N, _n_sm(u.device))
    members = member_count(u, A, D, delta_bias)
    chunks = triton.cdiv(batch // members, cfg.fwd_rows)  # per member
    D, delta_bias = _unit_channels(D), _unit_channels(delta_bias)
    ct, _ = _common(u, A, delta, B, C, D, z, delta_bias)
    out = _layout_like(u, u.dtype)
    grid = (members * chunks, triton.cdiv(dim, cfg.fwd_block_d))
    _scan_fwd_kernel[grid](
        u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
        delta_bias if delta_bias is not None else u, out,
        batch // members, chunks, dim, seqlen, N, cfg.fwd_rows,
        *_strides(u), *_strides(delta), *_strides(z), *_strides(out),
        *_strides(B), *_strides(C), A.stride(-2), A.stride(-1),
        _member_stride(A, 2), _member_stride(D, 1), _member_stride(delta_bias, 1), MEMBERS=members > 1,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
        L_PAD=triton.next_power_of_2(seqlen), N_PAD=triton.next_power_of_2(N),
        BLOCK_D=cfg.fwd_block_d, CT=ct, FAST=_fast(u, ct), num_warps=cfg.fwd_warps,
    )
    return out


def _backward(u, delta, A, B, C, D, z, delta_bias, softplus, dout, cfg: ScanConfig | None):
    batch, dim, seqlen = u.shape
    N = A.shape[-1]
    if cfg is None:
        cfg = _with_backward_shape(default_config(batch, dim, seqlen, N, _n_sm(u.device)), BACKWARD_SHAPE)
    members = member_count(u, A, D, delta_bias)
    D, delta_bias = _unit_channels(D), _unit_channels(delta_bias)
    ct, cdt = _common(u, A, delta, B, C, D, z, delta_bias)
    du, ddelta = _layout_like(u, u.dtype), _layout_like(u, delta.dtype)
    dz = _layout_like(u, z.dtype) if z is not None else None
    dev = u.device
    per_member = triton.cdiv(batch // members, cfg.bwd_rows)  # row chunks of one member
    chunks = members * per_member
    kernel, launch = _scan_bwd_kernel, dict(BLOCK_D=cfg.bwd_block_d, CT=ct, num_warps=cfg.bwd_warps)
    gluon = _gluon_backward(u, B, ct, cfg.bwd_lanes, cfg.bwd_maxnreg)
    if gluon is not None:
        kernel, launch = gluon
    block_d = launch["BLOCK_D"]
    per_split = triton.cdiv(triton.cdiv(dim, cfg.bwd_splits), block_d) * block_d
    splits = triton.cdiv(dim, per_split)
    dA_part = torch.empty(chunks, dim, N, dtype=cdt, device=dev)
    dD_part = torch.empty(chunks, dim, dtype=cdt, device=dev) if D is not None else dA_part
    dbias_part = torch.empty(chunks, dim, dtype=cdt, device=dev) if delta_bias is not None else dA_part
    # dB/dC partials follow B's memory order so that one split needs no copy
    n_fast = B.stride(1) < B.stride(2)
    shape = (splits, batch, seqlen, N) if n_fast else (splits, batch, N, seqlen)
    dB_part, dC_part = (torch.empty(shape, dtype=cdt, device=dev) for _ in range(2))
    view = (lambda p: p) if n_fast else (lambda p: p.transpose(2, 3))  # noqa: E731  -> [S, B, L, N]
    dpad = lambda t: t if t is not None else u  # noqa: E731  (absent tensors are never read)
    kernel[(chunks, splits)](
        u, delta, A, B, C, dpad(D), dpad(z), dpad(delta_bias), dout,
        du, ddelta, dz if dz is not None else du, dA_part, dB_part, dC_part, dD_part, dbias_part,
        batch // members, per_member, dim, seqlen, N, cfg.bwd_rows, per_split,
        *_strides(u), *_strides(delta), *_strides(z), *_strides(du),
        *_strides(dout), *_strides(B), *_strides(C), A.stride(-2), A.stride(-1),
        _member_stride(A, 2), _member_stride(D, 1), _member_stride(delta_bias, 1),
        *view(dB_part).stride(), MEMBERS=members > 1,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus,
        L_PAD=triton.next_power_of_2(seqlen), N_PAD=triton.next_power_of_2(N), FAST=_fast(u, ct), **launch,
    )
    dB, dC = (view(p).sum(0) if splits > 1 else view(p)[0] for p in (dB_part, dC_part))  # [B, L, N]
    return (
        du, ddelta, _per_member_sum(dA_part, A, 2, members).to(A.dtype), dB.transpose(1, 2).to(B.dtype),
        dC.transpose(1, 2).to(C.dtype),
        _per_member_sum(dD_part, D, 1, members).to(D.dtype) if D is not None else None,
        dz,
        _per_member_sum(dbias_part, delta_bias, 1, members).to(delta_bias.dtype) if delta_bias is not None else None,
    )


def _gluon_backward(u: Tensor, B: Tensor, ct, lanes: int, maxnreg: int = 0):
    """(kernel, launch constants) of the Gluon backward for this call, or None where it cannot
    launch (lanes 0, not CUDA, fp64, a problem too large for its shared memory, no Gluon)."""
    if lanes <= 0 or not u.is_cuda or ct != tl.float32:
        return None
    try:
        from flowstudy.models.ssm import gluon_scan
    except (ImportError, AttributeError):  # a Triton without Gluon, or an older Gluon
        return None
    seqlen, N = u.shape[2], B.shape[1]
    if not gluon_scan.eligible(seqlen, N, lanes):
        return None
    block_d, sl, tile, tr, lt, log_l = gluon_scan.layouts(seqlen, N, lanes, channels_fast=u.stride(1) < u.stride(2))
    launch = dict(BLOCK_D=block_d, SL=sl, TILE=tile, TR=tr, LT=lt, LOG_L=log_l, num_warps=1)
    if maxnreg > 0:
        launch["maxnreg"] = maxnreg
    return gluon_scan._scan_bwd_gluon_kernel, launch


class _TritonScan(torch.autograd.Function):
    """Forward keeps the inputs only; the backward kernel recomputes the states.

    A, D and delta_bias may carry a leading member axis (A [M, d, N], D [M, d]): the M members
    of a folded vmap call, each over its own block of batch rows. ``cfg`` None: the default
    launch shape of the (folded) problem. Calls outside torch.func transforms take its eager
    twin (:func:`_eager`).
    """

    @staticmethod
    def forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, cfg):  # noqa: D102
        return _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, cfg)

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        ctx.delta_softplus, ctx.cfg = inputs[-2:]
        ctx.save_for_backward(*inputs[:-2])  # u, delta, A, B, C, D, z, delta_bias

    @staticmethod
    def backward(ctx, dout):  # noqa: D102
        grads = _apply(_TritonScanBackward, *ctx.saved_tensors, dout, ctx.delta_softplus, ctx.cfg)
        return (*grads, None, None)

    @staticmethod
    def vmap(info, in_dims, *args):  # noqa: D102
        fold = MemberFold(info.batch_size, in_dims, args)
        return fold.rows(_apply(_TritonScan, *fold.args)), 0


_TritonScanBackward = gradients_function(
    lambda u, delta, A, B, C, D, z, delta_bias, dout, softplus, cfg: _backward(u, delta, A, B, C, D, z, delta_bias, softplus, dout, cfg),
    "the triton selective scan",
)


def _eager(fn: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """The ctx-style twin of a Function written for torch.func (forward + setup_context), for
    calls outside torch.func transforms: torch's apply binds the arguments of a Function with
    setup_context through inspect.signature, tens of microseconds a call, and the GPU path is
    launch-bound at small batches."""

    class Eager(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            output = fn.forward(*inputs)
            fn.setup_context(ctx, inputs, output)
            return output

        backward = staticmethod(fn.backward)

    Eager.__name__ = Eager.__qualname__ = f"{fn.__name__}Eager"
    return Eager


_EAGER: dict[type, type] = {}  # a Function written for torch.func -> its eager twin (made at first use)


def _apply(fn: type[torch.autograd.Function], *args):
    """fn.apply under a torch.func transform (vmap, grad, vjp), else its eager twin's (also the
    triton convolution's Functions)."""
    if torch._C._are_functorch_transforms_active():
        return fn.apply(*args)
    if fn not in _EAGER:
        _EAGER[fn] = _eager(fn)
    return _EAGER[fn].apply(*args)


# ----------------------------------------------------------------------------- torch.compile
# Inside torch.compile the Function above is a graph break: Dynamo cannot trace its launch code, and
# a break inside the network's loop over layers leaves that whole loop eager (the residual and
# time-conditioning adds around every layer unfused). As custom operators the scan and its backward
# are opaque nodes of one graph. Only calls outside torch.func transforms take them (vmapped calls,
# the stacked groups', keep the Function and its vmap rule).
@torch.library.custom_op("flowstudy::triton_selective_scan", mutates_args=())
def _scan_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor], z: Optional[Tensor],
             delta_bias: Optional[Tensor], delta_softplus: bool) -> Tensor:
    return _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, None)


@_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return _layout_like(u, u.dtype)


@torch.library.custom_op("flowstudy::triton_selective_scan_backward", mutates_args=())
def _scan_backward_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor], z: Optional[Tensor],
                      delta_bias: Optional[Tensor], delta_softplus: bool, dout: Tensor) -> List[Tensor]:
    """(du, ddelta, dA, dB, dC, dD, dz, ddelta_bias); an absent argument's gradient is an empty
    tensor (an operator returns tensors only); dB and dC contiguous (their fake's strides)."""
    du, ddelta, dA, dB, dC, dD, dz, dbias = _backward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, dout, None)
    grads = [du, ddelta, dA, dB.contiguous(), dC.contiguous(), dD, dz, dbias]
    return [g if g is not None else u.new_empty(0) for g in grads]


@_scan_backward_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, dout):
    empty = u.new_empty(0)
    return [_layout_like(u, u.dtype), _layout_like(u, delta.dtype), torch.empty_like(A, memory_format=torch.contiguous_format),
            B.new_empty(B.shape), C.new_empty(C.shape),
            torch.empty_like(D, memory_format=torch.contiguous_format) if D is not None else empty,
            _layout_like(u, z.dtype) if z is not None else empty,
            torch.empty_like(delta_bias, memory_format=torch.contiguous_format) if delta_bias is not None else empty]


def _scan_op_setup(ctx, inputs, output):
    ctx.delta_softplus = inputs[8]
    ctx.absent = [t is None for t in inputs[:8]]
    ctx.save_for_backward(*inputs[:8])


def _scan_op_backward(ctx, dout):
    grads = torch.ops.flowstudy.triton_selective_scan_backward(*ctx.saved_tensors, ctx.delta_softplus, dout)
    return (*[None if absent else g for g, absent in zip(grads, ctx.absent)], None)


_scan_op.register_autograd(_scan_op_backward, setup_context=_scan_op_setup)


def _compiling() -> bool:
    """Traced by torch.compile outside torch.func transforms: the custom operators' calls."""
    return torch.compiler.is_compiling() and not torch._C._are_functorch_transforms_active()


def selective_scan_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    *,
    config: ScanConfig | None = None,
) -> Tensor:
    """Selective scan with the arguments of :func:`selective_scan_torch`, for L <= 128.

    u, delta, z: [B, d, L]; A: [d, N] (real); B, C: [B, N, L]; D, delta_bias: [d]; any strides.
    Returns out: [B, d, L] in u's dtype and memory order. The state is fp32 (fp64 if any
    input is fp64). ``config`` overrides the launch shape (benchmarks, tests).
    """
    _check(u, delta, A, B, C, D, z, delta_bias)
    with torch.autocast(device_type=u.device.type, enabled=False):
        if config is None and _compiling():
            return _scan_op(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return _apply(_TritonScan, u, delta, A, B, C, D, z, delta_bias, delta_softplus, config)


def selective_scan_triton_blc(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """The triton scan in sequence-major layout, like :func:`selective_scan_blc`.

    u, delta, z: [B, L, d]; A: [d, N]; B, C: [B, L, N]; D, delta_bias: [d] -> [B, L, d].
    Transposed views only: the kernels read the strides as they are.
    """
    if u.dim() != 3 or B.dim() != 3:
        raise ValueError(f"selective scan expects u [B, L, d], B [B, L, N]; got {tuple(u.shape)}, {tuple(B.shape)}")
    t = lambda x: None if x is None else x.transpose(1, 2)  # noqa: E731
    out = selective_scan_triton(t(u), t(delta), A, t(B), t(C), D, t(z), delta_bias, delta_softplus)
    return out.transpose(1, 2)
