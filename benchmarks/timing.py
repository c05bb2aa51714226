"""The benchmarks' one timer: device synchronisation, repeated wall-clock timings, and a trainer
callback that clocks logged steps.

Scripts run as ``python benchmarks/NAME.py`` import it as ``from timing import ...`` (their folder
is first on the path). Every timing syncs the device before and after the timed call, so queued
GPU work is neither missed nor charged to the next call.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

__all__ = ["StepClock", "median_seconds", "seconds", "sync"]


def sync(device: torch.device | str | None = None) -> None:
    """Wait for the device's queued work (a no-op off CUDA). ``device=None``: the current CUDA device
    when there is one."""
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], Any], *, repeats: int, warmup: int = 0, device: torch.device | str | None = None) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, each synced on ``device``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        tic = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - tic)
    return times


def median_seconds(fn: Callable[[], Any], *, repeats: int, warmup: int = 0, device: torch.device | str | None = None) -> float:
    """The median of :func:`seconds`."""
    return statistics.median(seconds(fn, repeats=repeats, warmup=warmup, device=device))


class StepClock:
    """Trainer callback: (step, wall time) at each logged step, after a device sync.

    ``rate()``: optimiser steps per second between the first and the last logged step, so setup,
    compilation and graph capture before the first log are left out.
    """

    def __init__(self) -> None:
        self.marks: list[tuple[int, float]] = []

    def on_step(self, trainer, step: int, loss) -> None:
        """Record (step, time) after the trainer's device has finished the step."""
        sync(trainer.device)
        self.marks.append((step, time.perf_counter()))

    def rate(self) -> float:
        """Steps per second between the first and last mark."""
        (s0, t0), (s1, t1) = self.marks[0], self.marks[-1]
        return (s1 - s0) / (t1 - t0)
