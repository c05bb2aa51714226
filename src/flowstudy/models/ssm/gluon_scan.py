"""Backward of the Triton selective scan written in Gluon: explicit layouts, states in shared memory.

The tile backward (:mod:`flowstudy.models.ssm.triton_scan`) holds a row's whole [L, N, channels]
tile in registers and leaves the layout to Triton; its sums over N and over the channels cross
lanes, and at L = N = 16 it runs 90-104 instructions a state (benchmarks/SCAN.md). This kernel
fixes the layouts instead (Gluon, Triton's layout-explicit dialect, CUDA only):

* **Steps through time, a channel's states inside its lanes.** The state h is a [BLOCK_D, N] tile,
  ``LANES`` lanes a channel and N / LANES states a lane, so the recurrences are one multiply-add a
  state and the sums over N (y, d(delta u), the delta gradient) stay within a channel's lanes.
* **States through shared memory.** The forward recomputation's states h_t of every step go to a
  [L, BLOCK_D, N] buffer for the dC sums, then the reverse recurrence's adjoints G_t for the dB sums.
* **The sums over the channels (dB, dC) as in-thread sums.** After the forward pass the buffer is
  read back in a second layout, a thread holding every channel of a few (t, n) pairs:
  dC[t, n] = sum_d dy[t, d] h[t, d, n] is then a chain of multiply-adds in one thread, no
  shuffles; dB[t, n] = sum_d G[t, d, n] x[t, d] likewise after the reverse pass.
* **No barrier inside the time loops.** Triton orders two writes to one shared buffer with a
  barrier even where they touch different steps, so the loops keep a row's steps in registers
  (tuples, stacked by joins that move no data) and write them once: five barriers a row.
* **No tile in registers through the time loops.** A row's [L, BLOCK_D] inputs are loaded as whole
  tiles, discretised once and staged in shared memory, and the row's gradients are computed from
  the staged tiles after the last step.

The maths, arguments, partial buffers and grid are :func:`~flowstudy.models.ssm.triton_scan._backward`'s
(row chunks x channel splits; dA, dD, ddelta_bias summed over a chunk's rows, dB and dC over a
split's channel blocks, the rest by torch), so the two kernels are interchangeable launch by launch.
fp32 compute only; Gluon has no interpreter, so this kernel is tested on GPUs only.
"""

from __future__ import annotations

from functools import lru_cache

import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from flowstudy.models.ssm import scan_math
from flowstudy.models.ssm.scan_math import LOG2E

SMEM_BYTES = 48 * 1024
"""Largest shared-memory buffer set a program may take (the states are L x BLOCK_D x N floats)."""

# the tile kernel's scalar maths, compiled as Gluon functions
_rows = gluon.jit(scan_math._rows.fn)
_softplus = gluon.jit(scan_math._softplus.fn)
_sigmoid = gluon.jit(scan_math._sigmoid.fn)
_exp2 = gluon.jit(scan_math._exp2.fn)


@gluon.jit
def _tile_load(ptr, row, s_b, s_l, s_d, offs_t, offs_d, mask):
    """One row's [L, BLOCK_D] tile of a [B, d, L] tensor with strides (s_b, s_d, s_l), fp32."""
    p = ptr + row * s_b + offs_t[:, None] * s_l + offs_d[None, :] * s_d
    return gl.load(p, mask=mask, other=0.0).to(gl.float32)


@gluon.jit
def _joined(xs, L: gl.constexpr, LOG_L: gl.constexpr):
    """L tensors [*S] (a tuple, step order) -> one [*S, 2, ..., 2] tensor whose new axes are the
    bits of the step, the highest first. Joins put the new axis inside the threads, so no data
    moves: pairs (t, t + L/2), then (t, t + L/4), and so on."""
    cur = xs
    for level in gl.static_range(LOG_L):
        nxt = ()
        for i in gl.static_range(L >> (level + 1)):
            nxt = nxt + (gl.join(cur[i], cur[i + (L >> (level + 1))]),)
        cur = nxt
    return cur[0]


@gluon.jit
def _stack_states(xs, L: gl.constexpr, LOG_L: gl.constexpr):
    """L [C, N] tensors -> [L, C, N]."""
    r = _joined(xs, L, LOG_L)
    return gl.permute(gl.reshape(r, [r.shape[0], r.shape[1], L]), (2, 0, 1))


@gluon.jit
def _stack_channels(xs, L: gl.constexpr, LOG_L: gl.constexpr, LAYOUT: gl.constexpr):
    """L [C] tensors -> [L, C] in LAYOUT."""
    r = _joined(xs, L, LOG_L)
    return gl.convert_layout(gl.permute(gl.reshape(r, [r.shape[0], L]), (1, 0)), LAYOUT)


@gluon.jit
def _channel_sums(buf, vec, part, p_base, sp_l, sp_n, seqlen, dstate, accumulate,
                  L_PAD: gl.constexpr, LT: gl.constexpr, N_PAD: gl.constexpr, TR: gl.constexpr):
    """part[t, n] (+)= sum_d buf[t, d, n] vec[t, d]: buf the [L, BLOCK_D, N] state buffer, vec a
    [L, BLOCK_D] buffer, read LT steps at a time in layout TR (every channel inside a thread).
    accumulate: add to the stored partial (this program's own rows of its split's slice: no other
    writer), else overwrite it."""
    P2: gl.constexpr = gl.SliceLayout(1, TR)
    for t0 in gl.static_range(0, L_PAD, LT):
        s = buf.slice(t0, LT).load(TR)
        v = vec.slice(t0, LT).load(gl.SliceLayout(2, TR))
        r = gl.sum(s * v[:, :, None], axis=1)  # [LT, N]
        offs_t = t0 + gl.arange(0, LT, layout=gl.SliceLayout(1, P2))
        offs_n = gl.arange(0, N_PAD, layout=gl.SliceLayout(0, P2))
        m = (offs_t[:, None] < seqlen) & (offs_n[None, :] < dstate)
        p = part + p_base + offs_t[:, None] * sp_l + offs_n[None, :] * sp_n
        r += gl.load(p, mask=m & accumulate, other=0.0)
        gl.store(p, r, mask=m)


@gluon.jit
def _scan_bwd_gluon_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
    du_ptr, ddt_ptr, dz_ptr, dA_part, dB_part, dC_part, dD_part, dbias_part,
    rows_per_member, chunks_per_member, dim, seqlen, dstate, rows_per_prog, ch_per_split,
    su_b, su_l, su_d, sdt_b, sdt_l, sdt_d, sz_b, sz_l, sz_d, sg_b, sg_l, sg_d,
    sdo_b, sdo_l, sdo_d, sB_b, sB_l, sB_n, sC_b, sC_l, sC_n, sA_d, sA_n, sA_m, sD_m, sbias_m,
    sp_s, sp_b, sp_l, sp_n,
    MEMBERS: gl.constexpr,
    HAS_D: gl.constexpr, HAS_Z: gl.constexpr, HAS_BIAS: gl.constexpr, SOFTPLUS: gl.constexpr,
    L_PAD: gl.constexpr, N_PAD: gl.constexpr, BLOCK_D: gl.constexpr, FAST: gl.constexpr,
    SL: gl.constexpr, TILE: gl.constexpr, TR: gl.constexpr, LT: gl.constexpr, LOG_L: gl.constexpr,
):
    """Grid (row chunks, channel splits), one warp a program. SL: the [BLOCK_D, N] state layout;
    TILE: the [L, BLOCK_D] layout of the row's inputs and outputs; TR: the [LT, BLOCK_D, N] layout
    of the channel sums (channels inside a thread)."""
    CHV: gl.constexpr = gl.SliceLayout(1, SL)  # [BLOCK_D], a channel's lanes hold its value
    NV: gl.constexpr = gl.SliceLayout(0, SL)  # [N], each lane its states' values
    # row-major buffers: whole [L, ...] tiles in and out, one step at a time in the loops (step
    # views: the same memory with a layout of the trailing dimensions, indexed by the step)
    BC: gl.constexpr = gl.SliceLayout(1, TR)  # [L, N] tiles of B and C
    F1: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [0])
    F2: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [1, 0])
    F3: gl.constexpr = gl.SwizzledSharedLayout(1, 1, 1, [2, 1, 0])
    H = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D, N_PAD], F3)  # h_t, then G_t
    s_dl = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D], F2)
    s_x = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D], F2)
    s_dy = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D], F2)
    s_y = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D], F2)
    s_dx = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D], F2)
    s_dq = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D], F2)
    s_u = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D], F2)
    s_sp = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D], F2)
    s_zf = gl.allocate_shared_memory(gl.float32, [L_PAD, BLOCK_D], F2)
    s_B = gl.allocate_shared_memory(gl.float32, [L_PAD, N_PAD], F2)
    s_C = gl.allocate_shared_memory(gl.float32, [L_PAD, N_PAD], F2)
    dl_t = s_dl._reinterpret(gl.float32, [L_PAD, BLOCK_D], F1)
    x_t = s_x._reinterpret(gl.float32, [L_PAD, BLOCK_D], F1)
    dy_t = s_dy._reinterpret(gl.float32, [L_PAD, BLOCK_D], F1)
    B_t = s_B._reinterpret(gl.float32, [L_PAD, N_PAD], F1)
    C_t = s_C._reinterpret(gl.float32, [L_PAD, N_PAD], F1)

    pid_r, pid_s = gl.program_id(0).to(gl.int64), gl.program_id(1)
    member, row0, row1 = _rows(pid_r, rows_per_member, chunks_per_member, rows_per_prog, MEMBERS)
    c0 = pid_s * ch_per_split
    c1 = gl.minimum(c0 + ch_per_split, dim)
    offs_t = gl.arange(0, L_PAD, layout=gl.SliceLayout(1, TILE))
    offs_bt = gl.arange(0, L_PAD, layout=gl.SliceLayout(1, BC))
    offs_bn = gl.arange(0, N_PAD, layout=gl.SliceLayout(0, BC))
    m_bc = (offs_bt[:, None] < seqlen) & (offs_bn[None, :] < dstate)
    offs_sn = gl.arange(0, N_PAD, layout=NV)
    for d0 in range(c0, c1, BLOCK_D):
        offs_d = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, TILE))
        m_d = offs_d < c1
        m_td = (offs_t[:, None] < seqlen) & m_d[None, :]
        offs_sd = d0 + gl.arange(0, BLOCK_D, layout=CHV)
        m_nd = (offs_sd[:, None] < c1) & (offs_sn[None, :] < dstate)
        A2 = gl.load(A_ptr + member * sA_m + offs_sd[:, None] * sA_d + offs_sn[None, :] * sA_n,
                     mask=m_nd, other=0.0).to(gl.float32) * LOG2E  # [BLOCK_D, N]
        if HAS_BIAS:
            bias = gl.load(bias_ptr + member * sbias_m + offs_d, mask=m_d, other=0.0).to(gl.float32)
        if HAS_D:
            Dv = gl.load(D_ptr + member * sD_m + offs_d, mask=m_d, other=0.0).to(gl.float32)
        dA_acc = gl.zeros([BLOCK_D, N_PAD], gl.float32, SL)
        dD_acc = gl.zeros([BLOCK_D], gl.float32, gl.SliceLayout(0, TILE))
        dbias_acc = gl.zeros([BLOCK_D], gl.float32, gl.SliceLayout(0, TILE))
        for row in range(row0, row1):
            # the row's inputs as whole tiles, discretised once, staged for the time loops
            u = _tile_load(u_ptr, row, su_b, su_l, su_d, offs_t, offs_d, m_td)
            pre = _tile_load(dt_ptr, row, sdt_b, sdt_l, sdt_d, offs_t, offs_d, m_td)
            if HAS_BIAS:
                pre = pre + bias[None, :]
            dl = pre
            if SOFTPLUS:
                dl = _softplus(pre)
            dl = gl.where(m_td, dl, 0.0)  # padded steps and channels: no decay, no input
            dout = _tile_load(dout_ptr, row, sdo_b, sdo_l, sdo_d, offs_t, offs_d, m_td)
            dy = dout
            if HAS_Z:
                z = _tile_load(z_ptr, row, sz_b, sz_l, sz_d, offs_t, offs_d, m_td)
                sig = _sigmoid(z)
                dy = dout * z * sig
                s_zf.store(dout * sig * (1.0 + z * (1.0 - sig)))  # dz = zf y
            if SOFTPLUS:
                s_sp.store(_sigmoid(pre))  # d softplus / d pre
            if HAS_D:
                dD_acc += gl.sum(gl.where(m_td, dy * u, 0.0), axis=0)
            s_u.store(u)
            Bt = gl.load(B_ptr + row * sB_b + offs_bt[:, None] * sB_l + offs_bn[None, :] * sB_n,
                         mask=m_bc, other=0.0).to(gl.float32)
            Ct = gl.load(C_ptr + row * sC_b + offs_bt[:, None] * sC_l + offs_bn[None, :] * sC_n,
                         mask=m_bc, other=0.0).to(gl.float32)
            s_dl.store(dl)
            s_x.store(dl * u)
            s_dy.store(dy)
            s_B.store(Bt)
            s_C.store(Ct)
            gl.thread_barrier()

            # forward: the states of every step (kept in registers for the reverse pass, and written
            # to the buffer once), y for dz
            h = gl.zeros([BLOCK_D, N_PAD], gl.float32, SL)
            hs = ()
            ys = ()
            for t in gl.static_range(L_PAD):
                dls = dl_t.index(t).load(CHV)
                h = _exp2(dls[:, None] * A2, FAST) * h + x_t.index(t).load(CHV)[:, None] * B_t.index(t).load(NV)[None, :]
                hs = hs + (h,)
                if HAS_Z:
                    ys = ys + (gl.sum(h * C_t.index(t).load(NV)[None, :], axis=1),)
            H.store(_stack_states(hs, L_PAD, LOG_L))
            if HAS_Z:
                s_y.store(_stack_channels(ys, L_PAD, LOG_L, TILE))
            gl.thread_barrier()
            p_base = pid_s * sp_s + row * sp_b
            _channel_sums(H, s_dy, dC_part, p_base, sp_l, sp_n, seqlen, dstate, d0 > c0, L_PAD, LT, N_PAD, TR)

            # reverse: G_t = dy_t C_t + exp(delta_{t+1} A) G_{t+1}; Q_t = G_t exp(delta_t A) h_{t-1}
            g = gl.zeros([BLOCK_D, N_PAD], gl.float32, SL)
            Gs = ()
            dxs = ()
            dqs = ()
            for r in gl.static_range(L_PAD):
                dls = dl_t.index(L_PAD - 1 - r).load(CHV)
                G = g + dy_t.index(L_PAD - 1 - r).load(CHV)[:, None] * C_t.index(L_PAD - 1 - r).load(NV)[None, :]
                dxs = (gl.sum(G * B_t.index(L_PAD - 1 - r).load(NV)[None, :], axis=1),) + dxs
                g = G * _exp2(dls[:, None] * A2, FAST)
                if r < L_PAD - 1:
                    Q = g * hs[L_PAD - 2 - r]
                    dqs = (gl.sum(Q * A2, axis=1),) + dqs
                    dA_acc += Q * dls[:, None]
                else:
                    dqs = (gl.zeros([BLOCK_D], gl.float32, CHV),) + dqs
                Gs = (G,) + Gs
            gl.thread_barrier()  # the dC sums above have read the states
            H.store(_stack_states(Gs, L_PAD, LOG_L))
            s_dx.store(_stack_channels(dxs, L_PAD, LOG_L, TILE))
            s_dq.store(_stack_channels(dqs, L_PAD, LOG_L, TILE))
            gl.thread_barrier()
            _channel_sums(H, s_x, dB_part, p_base, sp_l, sp_n, seqlen, dstate, d0 > c0, L_PAD, LT, N_PAD, TR)

            # the row's gradients as whole tiles (its inputs reread from the staged tiles: no tile
            # stays in registers through the time loops)
            u = s_u.load(TILE)
            dl = s_dl.load(TILE)
            dx = s_dx.load(TILE)
            ddl = s_dq.load(TILE) * (1.0 / LOG2E) + dx * u
            du = dx * dl
            g_off = row * sg_b + offs_t[:, None] * sg_l + offs_d[None, :] * sg_d
            if HAS_D:
                du += s_dy.load(TILE) * Dv[None, :]
            if HAS_Z:
                y = s_y.load(TILE)
                if HAS_D:
                    y += u * Dv[None, :]
                gl.store(dz_ptr + g_off, s_zf.load(TILE) * y, mask=m_td)
            if SOFTPLUS:
                ddl = ddl * s_sp.load(TILE)
            dbias_acc += gl.sum(gl.where(m_td, ddl, 0.0), axis=0)
            gl.store(du_ptr + g_off, du, mask=m_td)
            gl.store(ddt_ptr + g_off, ddl, mask=m_td)
            gl.thread_barrier()  # the next row overwrites the staged tiles
        gl.store(dA_part + pid_r * dim * dstate + offs_sd[:, None] * dstate + offs_sn[None, :], dA_acc, mask=m_nd)
        if HAS_D:
            gl.store(dD_part + pid_r * dim + offs_d, dD_acc, mask=m_d)
        if HAS_BIAS:
            gl.store(dbias_part + pid_r * dim + offs_d, dbias_acc, mask=m_d)


@lru_cache(maxsize=None)  # called at every launch; layouts are immutable
def layouts(seqlen: int, dstate: int, lanes: int, channels_fast: bool):
    """(BLOCK_D, SL, TILE, TR, LT, LOG_L) of a launch with ``lanes`` lanes a channel (one warp)."""
    lp, np_ = triton.next_power_of_2(seqlen), triton.next_power_of_2(dstate)
    block_d = 32 // lanes
    sl = gl.BlockedLayout([1, np_ // lanes], [block_d, lanes], [1, 1], [1, 0])
    if channels_fast:  # lanes along the channels: the [B, L, d] layout of a Linear's output
        tile = gl.BlockedLayout([max(1, lp * block_d // 32), 1], [32 // block_d, block_d], [1, 1], [0, 1])
    else:  # lanes along time: [B, d, L]
        tl_ = min(lp, 32)
        tile = gl.BlockedLayout([1, max(1, block_d * tl_ // 32)], [tl_, 32 // tl_], [1, 1], [0, 1])
    nv = min(4, np_)
    nl = min(np_ // nv, 32)
    lt = min(lp, 32 // nl)
    cl = 32 // (nl * lt)
    tr = gl.BlockedLayout([1, block_d // cl, nv], [lt, cl, nl], [1, 1, 1], [2, 1, 0])
    return block_d, sl, tile, tr, lt, lp.bit_length() - 1


@lru_cache(maxsize=None)
def eligible(seqlen: int, dstate: int, lanes: int) -> bool:
    """Whether the Gluon backward can launch at this problem size with ``lanes`` lanes a channel."""
    lp, np_ = triton.next_power_of_2(seqlen), triton.next_power_of_2(dstate)
    block_d = 32 // lanes
    smem = 4 * (lp * block_d * np_ + 9 * lp * block_d + 2 * lp * np_)
    return lanes in (1, 2, 4, 8) and np_ >= lanes and np_ >= 4 and lp >= 2 and smem <= SMEM_BYTES
