"""Pure-PyTorch selective scan of Mamba v1, with a hand-written backward.

The scan (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", Alg. 2) for every batch row b and channel d, with a diagonal state of size N:

    delta_t = softplus(delta_t + delta_bias)              (if delta_softplus)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t      h_{-1} = 0
    y_t     = <C_t, h_t> + D * u_t
    out_t   = y_t * silu(z_t)                             (if z is given)

The state tensor h is [B, L, N, d]: B*L*N*d numbers, far more than any input. Plain
autograd would keep it (and exp(delta*A), and delta*B*u) alive per layer; here the
forward keeps only the inputs and the backward recomputes the states block by block
over the batch, as the fused CUDA kernel does. Blocks are sized to stay in the CPU
cache, which makes the elementwise passes about twice as fast as whole-batch tensors
and avoids page-faulting fresh multi-hundred-megabyte buffers on every call.

The state is held in float32 (float64 if any input is float64) whatever the input
dtype, and autocast is switched off inside the scan.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["selective_scan_torch", "selective_scan_blc"]

# Elements of one [b, L, N, d] block buffer: 2**21 floats = 8 MiB, three buffers fit
# a 32 MiB L3 cache. On CUDA the whole batch runs at once up to 2**27 elements.
_CPU_BLOCK_ELEMS = 2**21
_CUDA_BLOCK_ELEMS = 2**27
_LOG2E = math.log2(math.e)


def selective_scan_torch(
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
    """Selective scan with the argument layout of ``mamba_ssm``'s ``selective_scan_fn``.

    Parameters
    ----------
    u, delta, z : [B, d, L]
    A : [d, N] (real)
    B, C : [B, N, L] (input-dependent)
    D, delta_bias : [d]

    Returns
    -------
    out : [B, d, L], in u's dtype.
    """
    out = selective_scan_blc(
        u.transpose(1, 2),  # [B, L, d]
        delta.transpose(1, 2),
        A,
        B.transpose(1, 2),  # [B, L, N]
        C.transpose(1, 2),
        D,
        None if z is None else z.transpose(1, 2),
        delta_bias,
        delta_softplus,
    )
    return out.transpose(1, 2)  # [B, d, L]


def selective_scan_blc(
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
    """Selective scan in sequence-major layout (the layout of a Linear's output).

    u, delta, z: [B, L, d]; A: [d, N]; B, C: [B, L, N]; D, delta_bias: [d].
    Returns out: [B, L, d] in u's dtype.
    """
    if u.dim() != 3 or B.dim() != 3 or A.dim() != 2:
        raise ValueError(
            f"selective scan expects u [B, L, d], B [B, L, N], A [d, N]; "
            f"got {tuple(u.shape)}, {tuple(B.shape)}, {tuple(A.shape)}"
        )
    return _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any input is float64, else float32 (the state is never below fp32)."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _block_rows(batch: int, L: int, N: int, d: int, device: torch.device) -> int:
    """Batch rows per block so that one [b, L, N, d] buffer holds about the target size."""
    target = _CUDA_BLOCK_ELEMS if device.type == "cuda" else _CPU_BLOCK_ELEMS
    return max(1, min(batch, target // (L * N * d)))


def _states(dl: Tensor, x: Tensor, At2: Tensor, B: Tensor, dA: Tensor, H: Tensor) -> None:
    """Fill dA = exp(delta*A) and the states H of one block, in place.

    dl, x = dl*u: [b, L, d]; At2 = A^T log2(e): [N, d]; B: [b, L, N]; dA, H: [b, L, N, d].
    exp(a) is computed as exp2(a log2 e): on CPU torch's exp2 is several times faster
    than its exp, at the same accuracy to within one rounding of A log2 e.
    """
    torch.mul(dl.unsqueeze(2), At2, out=dA)  # [b, L, N, d]
    dA.exp2_()
    torch.mul(B.unsqueeze(3), x.unsqueeze(2), out=H)  # delta*B*u, [b, L, N, d]
    for t in range(1, H.shape[1]):
        H[:, t].addcmul_(dA[:, t], H[:, t - 1])  # h_t = dA_t * h_{t-1} + dBu_t


class _SelectiveScan(torch.autograd.Function):
    """Autograd function: forward keeps inputs only, backward recomputes the states."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):  # noqa: D102
        ct = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
        with torch.autocast(device_type=u.device.type, enabled=False):
            dl = _discretised_delta(delta, delta_bias, delta_softplus, ct)  # [B, L, d]
            uc, At = u.to(ct), A.to(ct).t().contiguous()  # At: [N, d]
            Bc, Cc = B.to(ct), C.to(ct)
            y = _scan_forward(uc, dl, At, Bc, Cc)  # [B, L, d]
            if D is not None:
                y = y.addcmul_(uc, D.to(ct))
            out = y if z is None else y * F.silu(z.to(ct))
        ctx.delta_softplus = delta_softplus
        ctx.compute_dtype = ct
        # y (scan + D*u) is needed only for dz.
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, None if z is None else y)
        return out.to(u.dtype)

    @staticmethod
    def backward(ctx, dout):  # noqa: D102
        u, delta, A, B, C, D, z, delta_bias, y = ctx.saved_tensors
        ct = ctx.compute_dtype
        with torch.autocast(device_type=u.device.type, enabled=False):
            dout = dout.to(ct)
            dz = None
            if z is not None:
                zc = z.to(ct)
                sig = torch.sigmoid(zc)
                dz = (dout * y * sig * (1 + zc * (1 - sig))).to(z.dtype)  # silu'(z)
                dout = dout * zc * sig  # gradient w.r.t. y = scan + D*u
            uc = u.to(ct)
            dl = _discretised_delta(delta, delta_bias, ctx.delta_softplus, ct)
            At = A.to(ct).t().contiguous()
            du, ddl, dAt, dB, dC = _scan_backward(uc, dl, At, B.to(ct), C.to(ct), dout)
            dD = None
            if D is not None:
                dD = (dout * uc).sum((0, 1)).to(D.dtype)
                du.addcmul_(dout, D.to(ct))
            ddelta = ddl
            if ctx.delta_softplus:
                pre = delta.to(ct) if delta_bias is None else delta.to(ct) + delta_bias.to(ct)
                ddelta = ddl * torch.sigmoid(pre)  # softplus' = sigmoid
            ddelta_bias = None if delta_bias is None else ddelta.sum((0, 1)).to(delta_bias.dtype)
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            dAt.t().to(A.dtype),
            dB.to(B.dtype),
            dC.to(C.dtype),
            dD,
            dz,
            ddelta_bias,
            None,
        )


def _discretised_delta(
    delta: Tensor, delta_bias: Tensor | None, softplus: bool, ct: torch.dtype
) -> Tensor:
    """delta + delta_bias, through softplus if asked; [B, L, d] in the compute dtype."""
    dl = delta.to(ct)
    if delta_bias is not None:
        dl = dl + delta_bias.to(ct)
    return F.softplus(dl) if softplus else dl


def _scan_forward(u: Tensor, dl: Tensor, At: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """y_t = <C_t, h_t> for all t, block by block over the batch. Returns [B, L, d]."""
    At2 = At * _LOG2E
    batch, L, d = u.shape
    N = At.shape[0]
    rows = _block_rows(batch, L, N, d, u.device)
    dA = u.new_empty(rows, L, N, d)
    H = u.new_empty(rows, L, N, d)
    y = u.new_empty(batch, L, d)
    for s in range(0, batch, rows):
        e = min(s + rows, batch)
        n = e - s
        dl_b = dl[s:e]
        _states(dl_b, dl_b * u[s:e], At2, B[s:e], dA[:n], H[:n])
        # [b, L, 1, N] @ [b, L, N, d] -> [b, L, 1, d]
        torch.matmul(C[s:e].unsqueeze(2), H[:n], out=y[s:e].unsqueeze(2))
    return y


def _scan_backward(
    u: Tensor, dl: Tensor, At: Tensor, B: Tensor, C: Tensor, dy: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of y = scan(u, dl, A, B, C) given dy = dL/dy.

    With G_t = dL/dh_t = dy_t C_t + exp(dl_{t+1} A) G_{t+1} (a reverse scan):
      dC_t = sum_d dy_t h_t;  d(dl_t u_t) = sum_n G_t B_t;  dB_t = sum_d G_t dl_t u_t;
      Q_t = G_t * h_{t-1} * exp(dl_t A);  ddl_t += sum_n Q_t A;  dA = sum_{b,t} Q_t dl_t.
    Returns du, ddl: [B, L, d]; dAt: [N, d]; dB, dC: [B, L, N].
    """
    At2 = At * _LOG2E
    batch, L, d = u.shape
    N = At.shape[0]
    rows = _block_rows(batch, L, N, d, u.device)
    dA, H, G = (u.new_empty(rows, L, N, d) for _ in range(3))
    # dA is summed over (b, t) once at the end: a large reduction per block costs more
    # (it splits the buffer across threads differently from the elementwise ops).
    dA_acc = u.new_empty(rows, L, N, d)
    dx, dB, dC = u.new_empty(batch, L, d), u.new_empty(batch, L, N), u.new_empty(batch, L, N)
    ddl_A = u.new_empty(batch, L, d)  # the exp(dl*A) path
    for s in range(0, batch, rows):
        e = min(s + rows, batch)
        n = e - s
        dA_b, H_b, G_b = dA[:n], H[:n], G[:n]
        dl_b, dy_b = dl[s:e], dy[s:e]
        x_b = dl_b * u[s:e]  # [b, L, d]
        _states(dl_b, x_b, At2, B[s:e], dA_b, H_b)
        torch.mul(C[s:e].unsqueeze(3), dy_b.unsqueeze(2), out=G_b)  # dy_t C_t
        for t in range(L - 2, -1, -1):
            G_b[:, t].addcmul_(dA_b[:, t + 1], G_b[:, t + 1])
        # P_t = exp(dl_t A) h_{t-1} in place of dA (no longer needed); P_0 = 0 as h_{-1} = 0.
        dA_b[:, 1:].mul_(H_b[:, :-1])
        dA_b[:, 0].zero_()
        dC[s:e] = H_b.mul_(dy_b.unsqueeze(2)).sum(3)  # H no longer needed
        torch.matmul(B[s:e].unsqueeze(2), G_b, out=dx[s:e].unsqueeze(2))  # [b, L, 1, d]
        dB[s:e] = torch.mul(G_b, x_b.unsqueeze(2), out=H_b).sum(3)
        Q = dA_b.mul_(G_b)  # [b, L, N, d]
        ddl_A[s:e] = torch.mul(Q, At, out=H_b).sum(2)
        if s == 0:  # the first block is always a full one
            torch.mul(Q, dl_b.unsqueeze(2), out=dA_acc)
        else:
            dA_acc[:n].addcmul_(Q, dl_b.unsqueeze(2))
    dAt = dA_acc.view(-1, N * d).sum(0).view(N, d)
    du = dx * dl
    ddl = ddl_A.addcmul_(dx, u)
    return du, ddl, dAt, dB, dC
