"""The fused CUDA kernels of mamba_ssm (and causal-conv1d), imported lazily.

Nothing here imports mamba_ssm or touches CUDA until ``fused_status()`` is first
called. mamba_ssm's import fails in many ways when its CUDA extension is missing or was
built for another torch (ImportError, OSError, undefined symbols, RuntimeError), so the
check catches any Exception, then runs one tiny scan on CUDA and compares it with the
PyTorch scan: the backend counts as available only when the kernels import *and* run.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["fused_status", "fused_selective_scan", "causal_conv1d_silu"]


@functools.lru_cache(maxsize=1)
def _selective_scan_fn() -> Callable[..., Tensor]:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    return selective_scan_fn


@functools.lru_cache(maxsize=1)
def _causal_conv1d_fn() -> Callable[..., Tensor] | None:
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:  # optional: torch's conv1d is the fallback
        return None
    return causal_conv1d_fn


def _smoke_test(scan: Callable[..., Tensor]) -> None:
    """Run one tiny fused scan on CUDA and check it against the PyTorch scan."""
    from flowstudy.models.ssm.torch_scan import selective_scan_torch

    g = torch.Generator(device="cpu").manual_seed(0)
    b, d, L, n = 2, 8, 5, 4
    u, delta, z = (torch.randn(b, d, L, generator=g) for _ in range(3))
    B, C = (torch.randn(b, n, L, generator=g) for _ in range(2))
    A = -torch.rand(d, n, generator=g) - 0.5
    D, bias = torch.ones(d), torch.randn(d, generator=g) * 0.1
    args = [x.cuda() for x in (u, delta, A, B, C, D, z, bias)]
    fused = scan(*args[:6], z=args[6], delta_bias=args[7], delta_softplus=True)
    ref = selective_scan_torch(*args[:6], z=args[6], delta_bias=args[7], delta_softplus=True)
    # allclose waits for this stream only: a device-wide synchronize here, in one of a study's threads,
    # would invalidate a CUDA graph that another thread is recording
    if not torch.allclose(fused, ref, rtol=1e-3, atol=1e-3):
        err = (fused - ref).abs().max().item()
        raise RuntimeError(f"fused scan disagrees with the PyTorch scan (max abs error {err:.3g})")


@functools.lru_cache(maxsize=1)
def fused_status() -> tuple[bool, str]:
    """(available, reason) for the fused backend; computed once, on first call."""
    if not torch.cuda.is_available():
        return False, "CUDA is not available"
    try:
        scan = _selective_scan_fn()
    except Exception as exc:  # broken or missing extension: any error means unavailable
        return False, f"mamba_ssm could not be imported ({type(exc).__name__}: {exc})"
    try:
        _smoke_test(scan)
    except Exception as exc:
        return False, f"mamba_ssm imported but its selective scan failed on CUDA ({type(exc).__name__}: {exc})"
    conv = "causal_conv1d" if _causal_conv1d_fn() is not None else "torch conv1d (causal-conv1d not installed)"
    version = _version("mamba_ssm")
    return True, f"mamba_ssm {version} selective_scan_fn, convolution by {conv}"


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except Exception:
        return "(unknown version)"


def fused_selective_scan(*args: Any, **kwargs: Any) -> Tensor:
    """mamba_ssm's ``selective_scan_fn`` (u, delta, z: [B, d, L]; B, C: [B, N, L])."""
    return _selective_scan_fn()(*args, **kwargs)


def causal_conv1d_silu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """SiLU(depthwise causal conv1d): x [B, d, L], weight [d, 1, k], bias [d] -> [B, d, L].

    Uses causal-conv1d's kernel when it imports, torch's conv1d otherwise (padding k-1
    on both sides, keep the first L outputs: output t sees inputs t-k+1 .. t).
    """
    fn = _causal_conv1d_fn()
    if fn is not None and x.is_cuda:
        return fn(x.contiguous(), weight.squeeze(1), bias, activation="silu")
    L, k = x.shape[-1], weight.shape[-1]
    return F.silu(F.conv1d(x, weight, bias, padding=k - 1, groups=x.shape[1])[..., :L])
