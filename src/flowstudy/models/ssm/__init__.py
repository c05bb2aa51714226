"""Selective state-space layers for the Mamba velocity networks.

- ``selective_scan_torch``: pure-PyTorch selective scan (CPU and GPU, fp32 state,
  hand-written backward), argument layout of mamba_ssm's ``selective_scan_fn``;
- ``selective_scan_ref``: the sequential float64 scan every fast scan is tested against;
- ``fused_status``: whether mamba_ssm's fused CUDA kernels import and run here;
- ``triton_status``: whether the Triton scan (``triton_scan``, L <= 128) can run here;
- ``MambaLayer``: the Mamba v1 mixer, parameter-compatible with ``mamba_ssm.Mamba``;
- ``BiMambaLayer``: a mixer with forward and backward SSM branches (Vision Mamba).

Importing this package never imports mamba_ssm nor touches CUDA.
"""

from __future__ import annotations

from flowstudy.models.ssm.backend import BACKENDS, FUSED_HOWTO, check_backend, resolve_backend, triton_status
from flowstudy.models.ssm.bimamba_layer import BiMambaLayer
from flowstudy.models.ssm.fused import fused_status
from flowstudy.models.ssm.mamba_layer import MambaLayer
from flowstudy.models.ssm.scan_ref import selective_scan_ref
from flowstudy.models.ssm.torch_scan import selective_scan_blc, selective_scan_torch

__all__ = [
    "BACKENDS",
    "FUSED_HOWTO",
    "BiMambaLayer",
    "MambaLayer",
    "check_backend",
    "fused_status",
    "resolve_backend",
    "selective_scan_blc",
    "selective_scan_ref",
    "selective_scan_torch",
    "triton_status",
]
