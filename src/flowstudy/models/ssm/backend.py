"""Choosing the compute backend of the Mamba layers: "torch", "fused" or "auto".

Both backends run over the same parameters, so a state_dict moves freely between them.
"auto" is resolved on every forward call from the device of the input: the fused
mamba_ssm kernels on CUDA when they import and run, the PyTorch scan otherwise.
"""

from __future__ import annotations

import torch

from flowstudy.errors import ConfigError
from flowstudy.models.ssm.fused import fused_status

__all__ = ["BACKENDS", "FUSED_HOWTO", "check_backend", "resolve_backend"]

BACKENDS = ("auto", "torch", "fused")
FUSED_HOWTO = (
    "pip install 'flowstudy[mamba]' on a CUDA machine with a matching torch, "
    "or use backend='torch'"
)


def _fused_unavailable() -> ImportError:
    _, reason = fused_status()
    return ImportError(f"The fused Mamba backend is unavailable: {reason}. To enable it: {FUSED_HOWTO}.")


def check_backend(backend: str) -> str:
    """Validate a backend name at construction time.

    Raises ConfigError (a ValueError) for unknown names, ImportError for "fused" when
    the fused kernels cannot run here.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown Mamba backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend == "fused" and not fused_status()[0]:
        raise _fused_unavailable()
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that runs a forward call on device: "torch" or "fused"."""
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "fused" if device.type == "cuda" and fused_status()[0] else "torch"
    if backend == "fused":
        if not fused_status()[0]:
            raise _fused_unavailable()
        if device.type != "cuda":
            raise RuntimeError(f"backend='fused' runs on CUDA tensors only; got a tensor on {device}")
        return "fused"
    raise ConfigError(f"unknown Mamba backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
