"""Executors: run a function over a study's cells, yielding each outcome as it completes.

Both executors share one interface::

    for cell, outcome in executor.map_cells(fn, cells, on_done=None):
        ...   # outcome: fn(cell)'s result, or a CellError carrying the error and its traceback

``LocalExecutor`` uses a pool of worker processes on this machine (``spawn``: no state
inherited from the parent, safe with torch threads). ``ThreadExecutor`` runs cells in threads of
this process, each on its own CUDA stream: on one GPU their kernels run side by side, where
processes would take turns. ``RayExecutor`` sends one Ray task per cell to a local or remote Ray
cluster, with the CPUs/GPUs each cell asks for.

Each cell runs with a fixed number of torch threads (cores // workers locally,
``num_cpus_per_cell`` on Ray), so two workers do not fight over the same cores.

Interrupts (SIGINT, Ctrl-C, and SIGTERM, while ``map_cells`` runs in the main thread) stop every
worker within seconds and raise :class:`StudyInterrupted`: cells not started never start; a cell
that is training stops at its step's end with a resumable ``last.pt`` (the trainer's own signal
handling); a cell that is sampling or evaluating is dropped (it runs again on the next run, which
resumes the study). Worker processes that have not ended after :data:`GRACE_SECONDS` are killed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator, Sequence

from flowstudy.errors import ConfigError, FlowstudyError
from flowstudy.study.grid import Cell

CellFn = Callable[[Cell], dict[str, Any]]
OnDone = Callable[[Cell, Any], None]

GRACE_SECONDS = 20.0
"""After an interrupt, how long a worker may take to finish its training step and write last.pt."""


class StudyInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a study's executor: its workers have ended (see the module docstring).

    ``signum``: the signal; ``running``: ids of the cells that were running (training ones saved a
    resumable checkpoint; the others run again on the next run).
    """

    def __init__(self, signum: int, running: Sequence[str] = ()):
        super().__init__(signum, list(running))
        self.signum, self.running = int(signum), list(running)

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}"


@contextmanager
def interrupts() -> Iterator[None]:
    """While open in the main thread, SIGINT and SIGTERM raise :class:`StudyInterrupted` there
    (elsewhere: nothing changes; only the main thread receives signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise StudyInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class CellError(FlowstudyError):
    """A cell that raised: the error's one-line description and the worker's traceback."""

    def __init__(self, message: str, traceback_text: str = "", seconds: float | None = None):
        super().__init__(message, traceback_text, seconds)
        self.message, self.traceback_text, self.seconds = message, traceback_text, seconds

    def __str__(self) -> str:
        return self.message


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def call_cell(fn: CellFn, cell: Cell, threads: int) -> dict[str, Any]:
    """Run ``fn(cell)`` with ``threads`` torch threads; any error becomes a picklable CellError."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    started = time.perf_counter()
    try:
        return fn(cell)
    except Exception as err:
        raise CellError(f"{type(err).__name__}: {err}", traceback.format_exc(), time.perf_counter() - started) from None


def _as_cell_error(err: BaseException) -> CellError:
    if isinstance(err, CellError):
        return err
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return CellError(f"{type(err).__name__}: {err}", text)


class LocalExecutor:
    """``workers`` worker processes on this machine, each with cores // workers torch threads."""

    def __init__(self, workers: int | None = None):
        self.workers = 1 if workers is None else int(workers)
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1; got {workers}")
        # Fixed by the requested pool size, not by how many cells are left, so a resumed
        # study computes its remaining cells with the same thread count as a fresh one.
        self.threads = max(1, available_cores() // self.workers)

    def map_cells(self, fn: CellFn, cells: Sequence[Cell], on_done: OnDone | None = None) -> Iterator[tuple[Cell, Any]]:
        """Run ``fn`` on every cell; yield (cell, result or CellError) as each completes."""
        import multiprocessing

        cells = list(cells)
        if not cells:
            return
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(cells)), mp_context=context, initializer=_ignore_sigint
        )
        pending = {pool.submit(call_cell, fn, cell, self.threads): cell for cell in cells}
        try:
            with interrupts():
                yield from _as_completed(pending, on_done)
        except BaseException as err:  # a signal, or the consumer stopped iterating: no one awaits the cells
            running = [getattr(cell, "id", str(cell)) for future, cell in pending.items() if future.running()]
            _stop_processes(pool, pending)
            if isinstance(err, StudyInterrupted):
                raise StudyInterrupted(err.signum, running) from None
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _stop_processes(pool: ProcessPoolExecutor, pending: dict) -> None:
    """Cancel the cells not started and end every worker process: SIGTERM, repeated until it exits
    (a training worker's handler takes the first ones, writes last.pt at its step's end and leaves
    the loop; then the default action ends it; an idle or evaluating worker ends at once); SIGKILL
    for any still alive after :data:`GRACE_SECONDS`."""
    import multiprocessing

    for future in pending:
        future.cancel()
    workers = [p for p in multiprocessing.active_children() if p.pid is not None]  # the pool's (no others here)
    deadline = time.monotonic() + GRACE_SECONDS
    while any(p.is_alive() for p in workers) and time.monotonic() < deadline:
        for process in workers:
            if process.is_alive():
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)
    for process in workers:
        if process.is_alive():
            process.kill()
        process.join(5)
    pool.shutdown(wait=False, cancel_futures=True)


def _as_completed(pending: dict, on_done: OnDone | None) -> Iterator[tuple[Cell, Any]]:
    """(cell, result or CellError) for each of ``pending``'s futures (future -> cell) as it completes,
    popping it; cancelled ones are dropped."""
    while pending:
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            cell = pending.pop(future)
            if future.cancelled():
                continue
            err = future.exception()
            outcome = future.result() if err is None else _as_cell_error(err)
            if on_done is not None:
                on_done(cell, outcome)
            yield cell, outcome


def _ignore_sigint() -> None:
    """Ctrl-C reaches the whole process group. A worker leaves it to the parent, which stops the
    workers with SIGTERM (:func:`_stop_processes`); a training one's own handler (the trainer's)
    takes either and stops at the step's end with a resumable last.pt."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ThreadExecutor(LocalExecutor):
    """``workers`` threads of this process; on CUDA each cell runs on its own stream.

    A GPU runs the kernels of one process's streams side by side but gives processes turns (time
    slices), so worker processes sharing a GPU add up their GPU time. Threads' captured steps can
    overlap where a step leaves the GPU partly idle (short kernels of small networks); steps bound
    by memory traffic gain little (benchmarks/RESULTS.md). Made for the study's stacked-group phase
    on one GPU (the current device; use Ray for several). The Python work of all cells shares one
    interpreter lock: a replayed step needs little of it, an eager step a lot. On CPU,
    :class:`LocalExecutor`'s processes are the better choice.

    The cells share the GPU's memory: one that runs out beside others starts again once one of
    them has ended (a run from its last.pt); one that runs out alone fails. Cells that wait for a
    CUDA-graph capture at once capture in the order they were given (the slowest first, where
    the study lists them so), since a run trains only once captured.

    torch's CPU threads are process-wide: cores // workers while it runs, as for the local executor
    (restored after). Ctrl-C or SIGTERM (when the study runs in the main thread) stops the cells
    that are training at their step's end with a resumable last.pt and starts no more; the study's
    next run resumes them.
    """

    def map_cells(self, fn: CellFn, cells: Sequence[Cell], on_done: OnDone | None = None) -> Iterator[tuple[Cell, Any]]:
        """Run ``fn`` on every cell; yield (cell, result or CellError) as each completes."""
        import torch

        from flowstudy.train.stopping import stop_threaded_runs

        cells = list(cells)
        if not cells:
            return
        if torch.cuda.is_available():
            from flowstudy.cudagraphs import prepare_threads

            prepare_threads(torch.device("cuda", torch.cuda.current_device()))
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        stop_threaded_runs(None)
        pool = _DaemonThreads(min(self.workers, len(cells)))
        on_stream = partial(_on_own_stream, partial(_MemoryRetry(), fn))
        pending = {pool.submit(call_cell, partial(_ranked, rank, on_stream), cell, self.threads): cell
                   for rank, cell in enumerate(cells)}
        try:
            with interrupts():
                yield from _as_completed(pending, on_done)
        except BaseException as err:  # a signal, or the consumer stopped iterating
            signum = err.signum if isinstance(err, StudyInterrupted) else signal.SIGINT
            running = [getattr(cell, "id", str(cell)) for future, cell in pending.items() if future.running()]
            for future in pending:  # cells not started never start
                future.cancel()
            stop_threaded_runs(signum)  # training ones stop at the step's end with last.pt
            wait(list(pending), timeout=GRACE_SECONDS)  # the rest (sampling, evaluating) is left behind
            if isinstance(err, (StudyInterrupted, KeyboardInterrupt)):
                raise StudyInterrupted(signum, running) from None
            raise
        finally:
            pool.close()
            torch.set_num_threads(previous_threads)


class _DaemonThreads:
    """A pool of daemon threads: ``submit(fn, *args) -> Future``; ``close()`` starts no more tasks.

    Daemon threads, unlike ThreadPoolExecutor's (which the interpreter joins at exit), do not keep
    an interrupted process alive while a cell they run finishes an evaluation.
    """

    def __init__(self, workers: int):
        import queue

        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._work, name=f"flowstudy-cell-{i}", daemon=True) for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self.tasks.put((future, fn, args))
        return future

    def close(self) -> None:
        for _ in self.threads:
            self.tasks.put(None)

    def _work(self) -> None:
        while (task := self.tasks.get()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to the consumer as the cell's outcome
                future.set_exception(err)


class _MemoryRetry:
    """Retries a thread's cell that ran out of GPU memory beside others, once another cell has ended.

    The study's threads share one GPU's memory; a cell's evaluation (exact NLL's batched VJPs) can
    need gigabytes, and fifteen at once may not fit. A cell that runs out waits until a cell that
    was running beside it ends (or it is the only one left), then starts again: a run resumes from
    its last.pt, an evaluation is redone. A cell that runs out alone fails as before. Each retry
    needs another cell to have ended, so the retries are bounded by the number of cells.
    """

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.running = self.ended = 0

    def __call__(self, fn: CellFn, cell: Cell) -> dict[str, Any]:
        import torch

        with self.changed:
            self.running += 1
        try:
            while True:
                with self.changed:
                    ended_before = self.ended
                try:
                    return fn(cell)
                except RuntimeError as err:  # torch.OutOfMemoryError, or a CUDA call's "out of memory" (cuBLAS, graphs)
                    if not isinstance(err, torch.cuda.OutOfMemoryError) and "CUDA error: out of memory" not in str(err):
                        raise
                    with self.changed:
                        if self.running == 1:
                            raise
                    from flowstudy.console import make_console

                    message = f"cell {getattr(cell, 'id', cell)} ran out of GPU memory beside other cells; it starts again when one ends ({str(err)[:120]})"
                    make_console(stderr=True).print(message, highlight=False)
                # the error and its frames (the cell's tensors) are released here
                _release_cached_memory()
                with self.changed:
                    self.changed.wait_for(lambda: self.ended > ended_before or self.running == 1)
        finally:
            with self.changed:
                self.running -= 1
                self.ended += 1
                self.changed.notify_all()


def _release_cached_memory() -> None:
    """Hand the caching allocator's unused blocks back to the GPU (not during another thread's capture)."""
    import torch

    if torch.cuda.is_available():
        from flowstudy.cudagraphs import CAPTURE_LOCK

        with CAPTURE_LOCK:
            torch.cuda.empty_cache()


def _ranked(rank: int, fn: CellFn, cell: Cell) -> dict[str, Any]:
    """``fn(cell)`` waiting for GPU captures with ``rank`` (its task's position: the first tasks,
    a study's slowest groups, capture first; flowstudy.cudagraphs.capture_rank)."""
    from flowstudy.cudagraphs import capture_rank

    with capture_rank(rank):
        return fn(cell)


def _on_own_stream(fn: CellFn, cell: Cell) -> dict[str, Any]:
    """``fn(cell)`` on a CUDA stream of its own where CUDA is available."""
    import torch

    if not torch.cuda.is_available():
        return fn(cell)
    from flowstudy.cudagraphs import work_stream

    stream = work_stream(torch.device("cuda", torch.cuda.current_device()))
    try:
        with torch.cuda.stream(stream):
            return fn(cell)
    finally:
        stream.synchronize()


class RayExecutor:
    """One Ray task per cell, on the cluster at ``address`` (a local instance when None).

    ``num_cpus_per_cell`` / ``num_gpus_per_cell`` are the task's resources; torch in the task
    uses ``num_cpus_per_cell`` threads. A Ray instance this executor started is shut down when
    ``map_cells`` ends; one that was running already is left alone.
    """

    def __init__(self, address: str | None = None, num_cpus_per_cell: float = 1, num_gpus_per_cell: float = 0):
        if num_cpus_per_cell <= 0 or num_gpus_per_cell < 0:
            raise ConfigError(
                f"num_cpus_per_cell must be > 0 and num_gpus_per_cell >= 0; got {num_cpus_per_cell}, {num_gpus_per_cell}"
            )
        self.address = address
        self.num_cpus_per_cell = num_cpus_per_cell
        self.num_gpus_per_cell = num_gpus_per_cell

    def map_cells(self, fn: CellFn, cells: Sequence[Cell], on_done: OnDone | None = None) -> Iterator[tuple[Cell, Any]]:
        """Run ``fn`` on every cell; yield (cell, result or CellError) as each completes."""
        ray = _import_ray()
        cells = list(cells)
        if not cells:
            return
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, ignore_reinit_error=True, include_dashboard=False)
        try:
            task = ray.remote(num_cpus=self.num_cpus_per_cell, num_gpus=self.num_gpus_per_cell)(call_cell)
            threads = max(1, int(self.num_cpus_per_cell))
            pending = {task.remote(fn, cell, threads): cell for cell in cells}
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    cell = pending.pop(ref)
                    outcome = _ray_outcome(ray, ref)
                    if on_done is not None:
                        on_done(cell, outcome)
                    yield cell, outcome
        finally:
            if started_here:
                ray.shutdown()


def _ray_outcome(ray, ref) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:  # raised in the task: unwrap our CellError
        cause = getattr(err, "cause", None)
        return cause if isinstance(cause, CellError) else _as_cell_error(cause or err)
    except ray.exceptions.RayError as err:  # worker died, object lost, ...
        return _as_cell_error(err)


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise ImportError("the Ray executor needs Ray: pip install 'flowstudy[ray]'") from err
    return ray


EXECUTORS: dict[str, type] = {"local": LocalExecutor, "threads": ThreadExecutor, "ray": RayExecutor}


def make_executor(
    name: str,
    *,
    workers: int | None = None,
    address: str | None = None,
    num_cpus_per_cell: float = 1,
    num_gpus_per_cell: float = 0,
):
    """The executor called ``name`` ("local", "threads" or "ray") with the options that apply to it."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    if name in ("local", "threads"):
        return EXECUTORS[name](workers)
    return RayExecutor(address, num_cpus_per_cell=num_cpus_per_cell, num_gpus_per_cell=num_gpus_per_cell)


__all__ = [
    "EXECUTORS", "GRACE_SECONDS", "CellError", "LocalExecutor", "RayExecutor", "StudyInterrupted", "ThreadExecutor",
    "available_cores", "call_cell", "interrupts", "make_executor",
]
