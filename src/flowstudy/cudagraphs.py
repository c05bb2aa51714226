"""CUDA graph capture that other threads' work on the same GPU cannot disturb.

Training steps and fixed-step solves are captured once and replayed (flowstudy.train.graph,
flowstudy.train.stacked, flowstudy.graph_solver). Several runs may train in threads of one
process, each on its own stream, so that their kernels overlap on one GPU (the study's "threads"
executor, flowstudy.study.executors). A capture (:func:`capture`: warm-up, then recording) then
has to hold four things:

- no other thread's work may land on the capturing stream: the capture stream comes from the
  low-priority pool, while the threads' own streams
  (:func:`work_stream`) come from the high-priority one, and one capture runs at a time
  (:data:`CAPTURE_LOCK`: two captures could draw the same pooled stream);
- other threads may allocate, free and launch while it records: ``capture_error_mode="thread_local"``
  (the default, "global", fails their cudaMalloc and event queries), and they must not synchronise
  the whole device (a capturing stream cannot be waited on: synchronise a stream instead);
- nothing else enters the graph: the caching allocator routes only the capturing stream's
  allocations to the graph's private pool;
- no graph is destroyed by the capturing thread: Python's cyclic garbage collector, which runs in
  whichever thread happens to allocate, is off while a graph records (:func:`_no_collection`). An
  earlier graph left in a reference cycle (a dropped trainer, a solver) would otherwise be freed
  mid-capture, and cudaGraphDestroy there fails the capture ("operation not permitted when stream
  is capturing"; seen when a benchmark sampled after training in one process).

With one thread the first three are what ``torch.cuda.graph`` does by default. Before threads start,
:func:`prepare_threads` makes the lazy initialisations that torch does not guard against threads.

Captures wait for each other, and a run trains only once captured: when many threads reach their
capture at once, the order they get the lock decides which runs start late. :data:`CAPTURE_LOCK`
passes to the waiting thread of the lowest :func:`capture_rank` (then the earliest to ask), so
the threads executor lets its first tasks (a study's slowest groups first) capture first. On one
H100 the architectures study's 9-member Mamba group, the last to finish, started training 35 and
55 s into the phase in two runs, where every MLP, U-Net and DiT group had started by 28 s
(benchmarks/RESULTS.md). :func:`last_wait` tells how long a thread waited for its last capture.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator, Sequence

import torch

__all__ = ["CAPTURE_LOCK", "OrderedLock", "capture", "capture_rank", "last_wait", "prepare_threads", "work_stream"]

_local = threading.local()  # .rank: capture_rank's; .waited: seconds of the last wait for an OrderedLock


@contextmanager
def capture_rank(rank: int) -> Iterator[None]:
    """Within (this thread): wait for :data:`CAPTURE_LOCK` with ``rank``; lower ranks get it
    first. Threads without a rank wait with rank 0."""
    before = getattr(_local, "rank", 0)
    _local.rank = rank
    try:
        yield
    finally:
        _local.rank = before


def last_wait() -> float:
    """Seconds this thread last waited for an :class:`OrderedLock` (0.0 if it never did)."""
    return getattr(_local, "waited", 0.0)


class OrderedLock:
    """A re-entrant lock that passes, when released, to the waiting thread of the lowest
    :func:`capture_rank`, and among equal ranks to the one that asked first."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._waiting: list[tuple[int, int]] = []  # heap of (rank, ticket)
        self._tickets = itertools.count()

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._changed:
            if self._owner == me:
                self._depth += 1
                return True
            entry, asked = (getattr(_local, "rank", 0), next(self._tickets)), time.perf_counter()
            heapq.heappush(self._waiting, entry)
            try:
                self._changed.wait_for(lambda: self._owner is None and self._waiting[0] == entry)
            except BaseException:  # interrupted while waiting: leave the queue to the others
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
                self._changed.notify_all()
                raise
            heapq.heappop(self._waiting)
            self._owner, self._depth = me, 1
            _local.waited = time.perf_counter() - asked
            return True

    def release(self) -> None:
        with self._changed:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of an OrderedLock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._changed.notify_all()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


CAPTURE_LOCK = OrderedLock()
"""Held for a whole warm-up and capture (re-entrant: a capture may record two graphs); waiting
threads get it in order of :func:`capture_rank`."""


def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    """A stream for warm-up steps and captures: from the low-priority pool, which :func:`work_stream`
    never draws from. Use it only while holding :data:`CAPTURE_LOCK`."""
    return torch.cuda.Stream(device=device, priority=0)


def work_stream(device: torch.device) -> torch.cuda.Stream:
    """A stream for one thread's work beside other threads': from the high-priority pool."""
    return torch.cuda.Stream(device=device, priority=-1)


def capture(
    device: torch.device,
    body: Callable[[], Any],
    *,
    warm_up: Callable[[], Any],
    warm_ups: int = 1,
    restore: Callable[[], Any] | None = None,
    first: Callable[[], Any] | None = None,
    generators: Sequence[torch.Generator] = (),
    around: Callable[[], ContextManager] = nullcontext,
) -> tuple[torch.cuda.CUDAGraph | None, torch.cuda.CUDAGraph, Any]:
    """Warm up, then record ``body`` as a CUDA graph (and ``first`` before it as a graph of its own,
    for a step split around host work): returns (first's graph or None, body's graph, what body
    returned, its tensors the graph's static outputs).

    ``warm_up`` runs ``warm_ups`` times eagerly on the capture stream (library handles, lazy
    modules, the caching allocator's blocks); ``restore`` then undoes what the warm-up changed,
    on the caller's stream. ``generators`` are registered with each graph (their draws advance at
    every replay); ``around()`` is entered for the warm-up and for each recording. All of it under
    :data:`CAPTURE_LOCK`, on a low-priority pool stream, in ``thread_local`` mode, with the garbage
    collector off while a graph records."""
    with CAPTURE_LOCK:
        stream = _capture_stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), around():
            for _ in range(warm_ups):
                warm_up()
        torch.cuda.current_stream(device).wait_stream(stream)
        if restore is not None:
            restore()
        graphs, out = [], None
        for fn in (first, body):
            if fn is None:
                graphs.append(None)
                continue
            graph = torch.cuda.CUDAGraph()
            for generator in generators:
                graph.register_generator_state(generator)
            with around(), _no_collection(), torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                out = fn()
            graphs.append(graph)
        torch.cuda.synchronize(device)
    return graphs[0], graphs[1], out


@contextmanager
def _no_collection() -> Iterator[None]:
    """The cyclic garbage collector off inside (and back to its earlier state after): garbage in
    reference cycles waits for the next collection outside a capture."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def prepare_threads(device: torch.device) -> None:
    """Call once on the main thread before threads work on ``device``: torch loads its CUDA linear
    algebra library at the first linalg call on CUDA, and two threads making that call at once fail
    with "lazy wrapper should be called at most once" (the base fields' eigendecompositions do)."""
    torch.linalg.cholesky_ex(torch.ones(1, 1, device=device))
    torch.cuda.synchronize(device)
