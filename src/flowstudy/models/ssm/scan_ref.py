"""The selective scan written out plainly: one time step at a time, in float64.

This is the definition the fast scans are held to (``selective_scan_torch``, the Triton and Gluon
kernels, mamba_ssm's fused kernel): their tests compare outputs and gradients against it. It is
slow (a Python loop over L) and meant for checking, not for training.
"""

from __future__ import annotations

import torch

__all__ = ["selective_scan_ref"]


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False) -> torch.Tensor:
    """Sequential selective scan in float64 (mamba_ssm's ``selective_scan_fn`` argument layout).

    u, delta, z: [B, d, L]; A: [d, N]; B, C: [B, N, L]; D, delta_bias: [d]. Returns float64 [B, d, L].

        dt_t = softplus(delta_t + delta_bias)   (softplus only with ``delta_softplus``)
        h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t,   h_0 = 0          h: [B, d, N]
        y_t = C_t . h_t + D u_t;   out = y * silu(z)

    Gradients flow through every input (autograd over the loop).
    """
    u, delta, A, B, C = (x.double() for x in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = torch.log1p(torch.exp(delta))
    batch, d, L = u.shape
    N = A.shape[1]
    h = torch.zeros(batch, d, N, dtype=torch.float64, device=u.device)
    ys = []
    for t in range(L):
        dt = delta[:, :, t]  # [B, d]
        h = torch.exp(dt[:, :, None] * A[None]) * h + dt[:, :, None] * B[:, None, :, t] * u[:, :, t, None]  # [B, d, N]
        y = (h * C[:, None, :, t]).sum(-1)  # [B, d]
        if D is not None:
            y = y + D.double() * u[:, :, t]
        ys.append(y)
    out = torch.stack(ys, dim=-1)  # [B, d, L]
    if z is not None:
        zz = z.double()
        out = out * zz * torch.sigmoid(zz)
    return out
