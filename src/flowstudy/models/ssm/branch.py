"""One selective-SSM branch of a Mamba mixer: conv -> SiLU -> (dt, B, C) -> scan -> gate.

    x = SiLU(conv1d(x));  (dt, B, C) = x_proj(x);  delta = dt_proj.weight @ dt
    y = selective_scan(x, delta, A = -exp(A_log), B, C, D, z,
                       delta_bias = dt_proj.bias, delta_softplus = True)

All backends compute this from the same modules; the torch and triton paths stay in the
sequence-major layout [B, L, d] of the Linear layers, the fused path uses the
channel-major layout [B, d, L] that mamba_ssm's kernels expect. Under autocast the
scan itself runs in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from flowstudy.models.ssm.fused import causal_conv1d_silu, fused_selective_scan
from flowstudy.models.ssm.torch_scan import selective_scan_blc

__all__ = ["causal_conv_blc", "causal_conv_silu", "selective_ssm"]


def causal_conv_blc(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Depthwise causal convolution in [B, L, d] layout: out_t = bias + sum_j w_j x_{t-k+1+j}.

    The same numbers as Conv1d(d, d, k, groups=d, padding=k-1) keeping the first L
    outputs, computed as k shifted multiply-adds: on CPU this is several times faster
    than the depthwise convolution kernels, whose backward is slow for short sequences.
    The backward is written out (:class:`_CausalConv`): k shifted multiply-adds for the input's
    gradient and k products summed for the weights', where autograd's zero-filled and accumulated
    a padded gradient per shift (15 ops fewer per layer and step; the input is kept for the
    backward, not its padded copy).
    x: [B, L, d]; weight: [d, 1, k]; bias: [d] -> [B, L, d].
    """
    return _CausalConv.apply(x, weight[:, 0, :].to(x.dtype), None if bias is None else bias.to(x.dtype))


class _CausalConv(torch.autograd.Function):
    """x [B, L, d], w [d, k], bias [d] or None -> [B, L, d]; differentiable once. torch.func
    transforms (vmap over stacked members, vjp) run its forward and backward batched."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:  # noqa: D102
        L, k = x.shape[1], w.shape[-1]
        xp = F.pad(x, (0, 0, k - 1, 0))  # [B, L + k - 1, d], zeros before the sequence
        out = x * w[:, k - 1] if bias is None else torch.addcmul(bias, x, w[:, k - 1])
        for j in range(k - 1):
            out = torch.addcmul(out, xp[:, j : j + L], w[:, j])
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        x, w, bias = inputs
        ctx.save_for_backward(x, w)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102
        x, w = ctx.saved_tensors
        L, k = x.shape[1], w.shape[-1]
        gp = F.pad(g, (0, 0, 0, k - 1))  # [B, L + k - 1, d], zeros after: out_{s + k - 1 - j} reads x_s
        dx = g * w[:, k - 1]
        for j in range(k - 1):
            dx = torch.addcmul(dx, gp[:, k - 1 - j : k - 1 - j + L], w[:, j])
        xp = F.pad(x, (0, 0, k - 1, 0))
        dw = torch.stack([(g * xp[:, j : j + L]).sum((0, 1)) for j in range(k)], dim=-1)  # [d, k]
        return dx, dw, g.sum((0, 1)) if ctx.has_bias else None


def causal_conv_silu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """silu(causal_conv_blc(x, weight, bias)): the torch backend's; the triton backend fuses the
    two (:func:`flowstudy.models.ssm.triton_conv.causal_conv_silu_triton`: one pass each way)."""
    return F.silu(causal_conv_blc(x, weight, bias))


def _delta(dt: Tensor, weight: Tensor) -> Tensor:
    """dt [B, L, R] (a column slice of x_proj's output) @ weight.T -> [B, L, d_inner], as one
    [B·L, R] product: on the 3-D slice, torch.compile's matmul did not fold the rows and ran a
    batched product over B with the weight expanded ([B, R, d_inner]), 2.9 ms of a 17 ms Mamba
    evaluation at 16,384 rows (H200, benchmarks/RESULTS.md)."""
    return F.linear(dt.reshape(-1, dt.shape[-1]), weight).view(*dt.shape[:-1], weight.shape[0])


def _fp32(p: Tensor) -> Tensor:
    """A parameter in at least fp32 (A_log, D and dt bias never enter the scan below fp32)."""
    return p.to(torch.promote_types(p.dtype, torch.float32))


def selective_ssm(
    x: Tensor,
    z: Tensor,
    conv1d: nn.Conv1d,
    x_proj: nn.Linear,
    dt_proj: nn.Linear,
    A_log: Tensor,
    D: Tensor,
    backend: str,
) -> Tensor:
    """x, z: [B, L, d_inner] -> y: [B, L, d_inner]; backend is "torch", "fused" or "triton"."""
    if backend == "fused":
        return _fused(x, z, conv1d, x_proj, dt_proj, A_log, D)
    scan, conv_silu = selective_scan_blc, causal_conv_silu
    if backend == "triton":  # imported here: importing the models never imports triton
        from flowstudy.models.ssm.triton_conv import causal_conv_silu_triton as conv_silu
        from flowstudy.models.ssm.triton_scan import selective_scan_triton_blc as scan
    xc = conv_silu(x, conv1d.weight, conv1d.bias)  # [B, L, d_inner]
    dt_rank, d_state = dt_proj.in_features, A_log.shape[1]
    dt, B, C = torch.split(x_proj(xc), [dt_rank, d_state, d_state], dim=-1)  # [B, L, R|N|N]
    delta = _delta(dt, dt_proj.weight)  # [B, L, d_inner]; the bias enters inside the scan
    A = -torch.exp(_fp32(A_log))  # [d_inner, N]
    return scan(xc, delta, A, B, C, _fp32(D), z, delta_bias=_fp32(dt_proj.bias), delta_softplus=True)


def _fused(
    x: Tensor,
    z: Tensor,
    conv1d: nn.Conv1d,
    x_proj: nn.Linear,
    dt_proj: nn.Linear,
    A_log: Tensor,
    D: Tensor,
) -> Tensor:
    """The fused path: mamba_ssm's selective_scan_fn on fp32 [B, d, L] inputs."""
    xc = causal_conv1d_silu(rearrange(x, "b l d -> b d l").contiguous(), conv1d.weight, conv1d.bias)
    dt_rank, d_state = dt_proj.in_features, A_log.shape[1]
    x_dbl = x_proj(rearrange(xc, "b d l -> b l d"))  # [B, L, R + 2N]
    dt, B, C = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=-1)
    delta = rearrange(_delta(dt, dt_proj.weight), "b l d -> b d l")  # [B, d_inner, L]
    with torch.autocast(device_type="cuda", enabled=False):
        y = fused_selective_scan(
            xc.float(),
            delta.float().contiguous(),
            -torch.exp(A_log.float()),
            rearrange(B, "b l n -> b n l").float().contiguous(),
            rearrange(C, "b l n -> b n l").float().contiguous(),
            D.float(),
            z=rearrange(z, "b l d -> b d l").float().contiguous(),
            delta_bias=dt_proj.bias.float(),
            delta_softplus=True,
        )  # [B, d_inner, L]
    return rearrange(y, "b d l -> b l d")
