"""CUDA graph capture that other threads' work on the same GPU cannot disturb.

Training steps and fixed-step solves are captured once and replayed (flowstudy.train.graph,
flowstudy.train.stacked, flowstudy.graph_solver). Several runs may train in threads of one
process, each on its own stream, so that their kernels overlap on one GPU (the study's "threads"
executor, flowstudy.study.executors). A capture then has to hold three things:

- no other thread's work may land on the capturing stream: :func:`capture_stream` draws the
  warm-up and capture streams from the low-priority pool, while the threads' own streams
  (:func:`work_stream`) come from the high-priority one, and one capture runs at a time
  (:data:`CAPTURE_LOCK`: two captures could draw the same pooled stream);
- other threads may allocate, free and launch while it records: ``capture_error_mode="thread_local"``
  (the default, "global", fails their cudaMalloc and event queries);
- nothing else enters the graph: the caching allocator routes only the capturing stream's
  allocations to the graph's private pool.

With one thread all of this is what ``torch.cuda.graph`` does by default. Before threads start,
:func:`prepare_threads` makes the lazy initialisations that torch does not guard against threads.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["CAPTURE_LOCK", "capture_stream", "prepare_threads", "recording", "work_stream"]

CAPTURE_LOCK = threading.RLock()
"""Held for a whole warm-up and capture (re-entrant: a capture may record two graphs)."""


def capture_stream(device: torch.device) -> torch.cuda.Stream:
    """A stream for warm-up steps and captures: from the low-priority pool, which :func:`work_stream`
    never draws from. Use it only while holding :data:`CAPTURE_LOCK`."""
    return torch.cuda.Stream(device=device, priority=0)


def work_stream(device: torch.device) -> torch.cuda.Stream:
    """A stream for one thread's work beside other threads': from the high-priority pool."""
    return torch.cuda.Stream(device=device, priority=-1)


@contextmanager
def recording(graph: torch.cuda.CUDAGraph, stream: torch.cuda.Stream) -> Iterator[None]:
    """Record ``graph`` on ``stream`` (from :func:`capture_stream`, under :data:`CAPTURE_LOCK`),
    tolerating other threads' CUDA calls meanwhile."""
    with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
        yield


def prepare_threads(device: torch.device) -> None:
    """Call once on the main thread before threads work on ``device``: torch loads its CUDA linear
    algebra library at the first linalg call on CUDA, and two threads making that call at once fail
    with "lazy wrapper should be called at most once" (the base fields' eigendecompositions do)."""
    torch.linalg.cholesky_ex(torch.ones(1, 1, device=device))
    torch.cuda.synchronize(device)
