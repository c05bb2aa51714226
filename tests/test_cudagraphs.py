"""flowstudy.cudagraphs' ordered capture lock, on CPU (threads only; captures are GPU tests)."""

from __future__ import annotations

import threading
import time

import pytest

from flowstudy.cudagraphs import OrderedLock, capture_rank, last_wait


def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _queue(lock: OrderedLock, ranks: list[int]) -> tuple[list[threading.Thread], list[int]]:
    """Threads that wait for ``lock`` (held by the caller) with ``ranks``, in that order of arrival;
    each appends its position in ``ranks`` once it holds the lock."""
    order: list[int] = []

    def take(i: int, rank: int) -> None:
        with capture_rank(rank), lock:
            order.append(i)

    threads = []
    for i, rank in enumerate(ranks):
        threads.append(threading.Thread(target=take, args=(i, rank)))
        threads[-1].start()
        _wait_until(lambda n=i + 1: len(lock._waiting) == n)  # queued before the next one asks
    return threads, order


def test_waiting_threads_get_the_lock_by_rank_then_arrival():
    lock = OrderedLock()
    with lock:
        threads, order = _queue(lock, [3, 1, 2, 1, 0])
    for t in threads:
        t.join(10)
    assert order == [4, 1, 3, 2, 0]  # rank 0, the two rank-1 threads as they came, then 2 and 3
    assert lock._waiting == [] and lock._owner is None


def test_the_lock_is_reentrant_and_only_its_holder_releases_it():
    lock = OrderedLock()
    lock.acquire()
    lock.acquire()  # a capture that records two graphs
    lock.release()
    threads, order = _queue(lock, [0])
    assert order == []  # still held once
    errors = []
    intruder = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, lock.release)))
    intruder.start()
    intruder.join(10)
    assert "does not hold" in str(errors[0].value)
    lock.release()
    threads[0].join(10)
    assert order == [0]


def test_a_waiter_that_is_interrupted_leaves_the_queue():
    lock = OrderedLock()

    class Interrupted(Exception):
        pass

    def wait_for(predicate):
        raise Interrupted

    with lock:
        lock._changed.wait_for = wait_for  # the waiting thread's wait ends in an exception
        outcome = []

        def take():
            try:
                with lock:
                    outcome.append("held")
            except Interrupted:
                outcome.append("interrupted")

        thread = threading.Thread(target=take)
        thread.start()
        thread.join(10)
    assert outcome == ["interrupted"] and lock._waiting == []
    del lock._changed.wait_for
    with lock:  # and the lock still works
        pass


def test_last_wait_is_the_time_this_thread_waited():
    lock = OrderedLock()
    waited = []

    def take():
        with lock:
            waited.append(last_wait())

    with lock:
        thread = threading.Thread(target=take)
        thread.start()
        _wait_until(lambda: len(lock._waiting) == 1)
        time.sleep(0.2)
    thread.join(10)
    assert waited[0] >= 0.2
    with lock:  # no wait: the lock was free
        assert last_wait() < 0.05
