"""What a step computes in: bf16 autocast, TF32 matrix products, or plain float32.

A low module: the trainer, its captured and stacked steps, and sampling all read a run's
``precision`` ("fp32", "tf32" or "bf16") through :func:`autocast_for` and :func:`matmul_precision`.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext

import torch


class TF32Matmuls:
    """Inside the block, CUDA matrix products and convolutions of float32 tensors run on TF32
    tensor cores (inputs rounded to a 10-bit mantissa, float32 accumulation); the previous
    settings come back when the last block ends. Re-entrant, across threads too (runs trained in
    threads of one process), and reusable as one object (as torch.autocast is). The flags are
    process-wide: a float32 run in one thread beside a tf32 run in another gets TF32 products in
    its eager parts; a CUDA graph keeps the kernels chosen while it was captured."""

    _lock = threading.Lock()
    _depth = 0  # blocks open in this process
    _saved: tuple[bool, bool] = (False, False)  # the flags before the first of them

    def __enter__(self) -> None:
        cls = TF32Matmuls
        with cls._lock:
            if cls._depth == 0:
                cls._saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            cls._depth += 1

    def __exit__(self, *exc) -> None:
        cls = TF32Matmuls
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = cls._saved


def matmul_precision(device: torch.device, precision: str):
    """TF32 products (:class:`TF32Matmuls`) on CUDA for precision "tf32"; else no change. Wraps a
    whole step, backward included, or a whole fit."""
    return TF32Matmuls() if device.type == "cuda" and precision == "tf32" else nullcontext()


def autocast_for(device: torch.device, precision: str):
    """What a network's forward runs under: bf16 autocast on CUDA for "bf16", TF32 products on CUDA
    for "tf32", plain fp32 everywhere else (and for the loss's reduction). Reusable."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return matmul_precision(device, precision)


__all__ = ["TF32Matmuls", "autocast_for", "matmul_precision"]
