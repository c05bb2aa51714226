"""Choosing the compute backend of the Mamba layers: "torch", "fused", "triton" or "auto".

All backends run over the same parameters, so a state_dict moves freely between them.
"triton" is the Triton scan of ``triton_scan`` (sequences of at most 128 steps), on CUDA,
or on CPU in Triton's interpreter when TRITON_INTERPRET=1.
"auto" is resolved on every forward call from the device of the input: the fused
mamba_ssm kernels on CUDA when they import and run, the PyTorch scan otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from flowstudy.errors import ConfigError
from flowstudy.models.ssm.fused import fused_status

__all__ = ["BACKENDS", "FUSED_HOWTO", "check_backend", "interpreted", "resolve_backend", "triton_status"]

BACKENDS = ("auto", "torch", "fused", "triton")
FUSED_HOWTO = (
    "pip install 'flowstudy[mamba]' on a CUDA machine with a matching torch, "
    "or use backend='torch'"
)


def _fused_unavailable() -> ImportError:
    _, reason = fused_status()
    return ImportError(f"The fused Mamba backend is unavailable: {reason}. To enable it: {FUSED_HOWTO}.")


def interpreted() -> bool:
    """Whether Triton kernels run in Triton's interpreter (TRITON_INTERPRET=1: CPU tensors)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@functools.lru_cache(maxsize=1)
def triton_status() -> tuple[bool, str]:
    """(available, reason) for the triton backend; imports nothing."""
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install triton)"
    if interpreted():
        return True, "Triton interpreter (TRITON_INTERPRET=1): CPU tensors, slow"
    if not torch.cuda.is_available():
        return False, "CUDA is not available (TRITON_INTERPRET=1 runs the kernels on CPU, slowly)"
    return True, "Triton selective scan, sequences of at most 128 steps"


def check_backend(backend: str) -> str:
    """Validate a backend name at construction time.

    Raises ConfigError (a ValueError) for unknown names, ImportError for "fused" when
    the fused kernels cannot run here.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown Mamba backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend == "fused" and not fused_status()[0]:
        raise _fused_unavailable()
    if backend == "triton" and not triton_status()[0]:
        raise ImportError(f"The triton Mamba backend is unavailable: {triton_status()[1]}; or use backend='torch'.")
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that runs a forward call on device: "torch", "fused" or "triton"."""
    if backend == "torch":
        return "torch"
    if backend == "triton":
        if device.type != "cuda" and not interpreted():
            raise RuntimeError(f"backend='triton' runs on CUDA tensors only; got a tensor on {device}")
        return "triton"
    if backend == "auto":
        return "fused" if device.type == "cuda" and fused_status()[0] else "torch"
    if backend == "fused":
        if not fused_status()[0]:
            raise _fused_unavailable()
        if device.type != "cuda":
            raise RuntimeError(f"backend='fused' runs on CUDA tensors only; got a tensor on {device}")
        return "fused"
    raise ConfigError(f"unknown Mamba backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
