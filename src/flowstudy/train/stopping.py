"""Stopping a run at a step's end, with a resumable last.pt.

A run holds a :class:`StopRequest` and checks it after every step. Three things set it:

- SIGINT or SIGTERM while the run trains in the main thread (which alone receives signals);
- :func:`stop_threaded_runs`, for runs that train in other threads (the study's threads executor
  calls it from its own handling of those signals);
- :meth:`StopRequest.request`, from anywhere (a callback, a test).

A low module: the trainer and the study's executors both import it, and it imports neither.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from flowstudy.errors import TrainingError


class TrainingInterrupted(TrainingError):
    """Ctrl-C or SIGTERM (or another stop request): a resumable last.pt was written."""


class StopRequest:
    """The signal a run was asked to stop by; ``signum`` is None while it may train on."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def request(self, signum: int = signal.SIGINT) -> None:
        """Stop at the end of the step in progress, as ``signum`` does."""
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal's name ("SIGTERM"), for messages."""
        return signal.Signals(self.signum).name if self.signum is not None else "nothing"


_LOCK = threading.Lock()
_THREADED: set[StopRequest] = set()  # the requests of runs training in threads other than the main one
_threaded_stop: int | None = None


@contextmanager
def stop_on_signals(request: StopRequest):
    """While the block runs, SIGINT and SIGTERM set ``request`` (in the main thread; the previous
    handlers come back after), or, in any other thread, :func:`stop_threaded_runs` does."""
    if threading.current_thread() is not threading.main_thread():
        with _LOCK:
            _THREADED.add(request)
            if _threaded_stop is not None:
                request.request(_threaded_stop)
        try:
            yield
        finally:
            with _LOCK:
                _THREADED.discard(request)
        return
    previous = {s: signal.signal(s, lambda signum, _frame: request.request(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_threaded_runs(signum: int | None = signal.SIGINT) -> None:
    """Make every run that trains, or starts training, in a thread other than the main one stop at
    its step's end with a resumable last.pt, as ``signum`` does to a run in the main thread. ``None``
    lifts the request for runs started from then on (an executor's next batch of tasks)."""
    global _threaded_stop
    with _LOCK:
        _threaded_stop = signum
        if signum is not None:
            for request in _THREADED:
                request.request(signum)


__all__ = ["StopRequest", "TrainingInterrupted", "stop_on_signals", "stop_threaded_runs"]
