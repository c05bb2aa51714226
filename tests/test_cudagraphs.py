"""flowstudy.cudagraphs' ordered capture lock and collector switch, on CPU (threads only); captures
are GPU tests."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest
import torch

from flowstudy.cudagraphs import OrderedLock, _no_collection, capture, capture_rank, last_wait


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


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_off_inside_and_as_before_after_even_on_error(enabled):
    before = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with _no_collection():
            assert not gc.isenabled()
        assert gc.isenabled() == enabled
        with pytest.raises(KeyError), _no_collection():
            raise KeyError("body")
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if before else gc.disable)()


@pytest.mark.gpu
def test_a_graph_in_a_reference_cycle_dropped_during_a_capture_is_freed_after_it():
    """An earlier graph that becomes cyclic garbage while another records (a dropped trainer) is
    not destroyed inside that capture, which would fail it, but at the next collection."""
    device = torch.device("cuda")
    x = torch.arange(4.0, device=device)
    keep, freed, freed_while_recording = [], [], []

    def orphan():  # after the warm-up: a young cycle, collected at the first collection after `keep` lets go
        _, graph, _ = capture(device, lambda: x * 3, warm_up=lambda: x * 3)
        cycle = [graph]
        cycle.append(cycle)
        weakref.finalize(graph, freed.append, True)
        keep.append(cycle)

    def body():
        keep.clear()  # now garbage, in a cycle
        junk = [[i] for i in range(20_000)]  # enough container allocations for several collections
        freed_while_recording.append(bool(freed))
        return x * 2 + len(junk)

    assert gc.isenabled()
    _, graph, out = capture(device, body, warm_up=lambda: x * 2, restore=orphan)
    assert freed_while_recording == [False]
    graph.replay()
    torch.testing.assert_close(out.cpu(), torch.arange(4.0) * 2 + 20_000)
    gc.collect()
    assert freed == [True]
