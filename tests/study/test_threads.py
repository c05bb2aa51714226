"""The threads executor: cells in threads of one process (on CUDA each on its own stream)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from flowstudy.study import run_study
from flowstudy.study.store import STORE_NAME, ResultStore
from flowstudy.study.executors import CellError, ThreadExecutor, make_executor
from flowstudy.train import Trainer, TrainingInterrupted, load_checkpoint


def test_a_study_in_threads_equals_the_one_in_worker_processes(reference_study, same_table, tmp_path):
    """Two cells train and evaluate at once in one process, yet each gives what it gives alone."""
    spec_path, _, reference = reference_study
    results = run_study(spec_path, tmp_path / "tiny", executor="threads", workers=3, progress=False)
    failures = ResultStore(tmp_path / "tiny" / STORE_NAME).failures()
    assert not failures, [(f["id"], f["error"], f["traceback"]) for f in failures]  # a cell that failed, and why
    same_table(results, reference)


def test_pytest_rewrites_only_this_projects_test_modules(pytestconfig):
    """Library modules named like tests are not parsed by pytest's assertion rewriter when a cell
    thread first imports them: on CPython 3.11 that parse beside a .npy header parse in another
    thread can fail with "AST constructor recursion depth mismatch" (pyproject.toml)."""
    from pathlib import Path

    from _pytest.pathlib import fnmatch_ex

    patterns = pytestconfig.getini("python_files")
    library = Path(torch.__file__).parent / "_inductor" / "test_operators.py"  # imported lazily by torch._dynamo
    assert not any(fnmatch_ex(p, library) for p in patterns)
    assert not any(fnmatch_ex(p, Path("/site-packages/scipy/stats/_page_trend_test.py")) for p in patterns)
    assert any(fnmatch_ex(p, Path(__file__)) for p in patterns)


def test_thread_executor_reports_errors_and_keeps_torch_threads():
    before = torch.get_num_threads()

    def fn(cell):
        if cell == "bad":
            raise ValueError(f"cell {cell} is broken")
        return {"cell": cell, "threads": torch.get_num_threads()}

    outcomes = dict(make_executor("threads", workers=2).map_cells(fn, ["a", "bad", "c"]))
    assert outcomes["a"] == {"cell": "a", "threads": max(1, len(os.sched_getaffinity(0)) // 2)}
    assert isinstance(outcomes["bad"], CellError) and outcomes["bad"].message == "ValueError: cell bad is broken"
    assert "raise ValueError" in outcomes["bad"].traceback_text
    assert torch.get_num_threads() == before
    with pytest.raises(Exception, match="workers must be >= 1"):
        ThreadExecutor(workers=0)


def test_thread_executor_ranks_its_tasks_for_captures_in_the_order_given():
    from flowstudy import cudagraphs

    def fn(cell):
        return {"rank": getattr(cudagraphs._local, "rank", None)}

    outcomes = dict(make_executor("threads", workers=2).map_cells(fn, ["slowest", "b", "c"]))
    assert {cell: out["rank"] for cell, out in outcomes.items()} == {"slowest": 0, "b": 1, "c": 2}


class _SigtermAt:
    """Sends SIGTERM to this process (its main thread handles it) when its run reaches ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, trainer, step, loss):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_stops_training_threads_resumably_and_starts_no_more(tmp_path, tiny_data):
    """SIGTERM reaches the main thread only; a run training in a worker thread still stops at its
    step's end with a resumable last.pt, and cells not yet started never start."""
    from flowstudy.train.config import TrainConfig

    cfg = TrainConfig(data=f"{tiny_data}:train", arch="mlp-tiny", steps=200, batch_size=32, val_every=50, device="cpu", seed=1).validate()
    started = []

    def fn(name):
        started.append(name)
        callbacks = [_SigtermAt(25)] if name == "first" else []  # the first loss record
        return Trainer(cfg, tmp_path / name, callbacks=callbacks, progress=False).fit()

    from flowstudy.study.executors import StudyInterrupted

    outcomes = {}
    with pytest.raises(StudyInterrupted, match="interrupted by SIGTERM") as stopped:
        for name, outcome in ThreadExecutor(workers=1).map_cells(fn, ["first", "second"]):
            outcomes[name] = outcome
    assert started == ["first"] and stopped.value.signum == signal.SIGTERM  # the second cell never started
    assert all(isinstance(o, CellError) and "interrupted by SIGTERM" in o.message for o in outcomes.values())
    state = load_checkpoint(tmp_path / "first/checkpoints/last.pt")
    assert not state["finished"] and 25 <= state["step"] < 200
    result = Trainer(cfg, tmp_path / "first", progress=False).fit(resume=True)  # the next run resumes it
    assert result.steps == 200


def test_a_stop_request_reaches_runs_in_threads_only_until_lifted(tmp_path, tiny_data):
    from flowstudy.train.config import TrainConfig
    from flowstudy.train.stopping import stop_threaded_runs

    cfg = TrainConfig(data=f"{tiny_data}:train", arch="mlp-tiny", steps=40, batch_size=32, val_every=20, device="cpu", seed=1).validate()
    outcome = {}

    def train(name):
        try:
            outcome[name] = Trainer(cfg, tmp_path / name, progress=False).fit().steps
        except TrainingInterrupted as err:
            outcome[name] = str(err)

    stop_threaded_runs(signal.SIGINT)
    try:
        thread = threading.Thread(target=train, args=("stopped",))
        thread.start()
        thread.join(60)
        assert outcome["stopped"].startswith("interrupted by SIGINT at step 1/40")
        train("main thread")  # the request is for other threads' runs
        assert outcome["main thread"] == 40
    finally:
        stop_threaded_runs(None)
    thread = threading.Thread(target=train, args=("after",))
    thread.start()
    thread.join(60)
    assert outcome["after"] == 40


def test_runs_set_up_in_threads_draw_the_weights_they_draw_alone(tmp_path, tiny_data, monkeypatch):
    """Initial weights come from torch's global generator, seeded per run: runs that set up at once
    in threads must not reseed it under one another."""
    import flowstudy.models as models
    from flowstudy.train.config import TrainConfig

    original = models.create_model

    def slow_create_model(*args, **kwargs):
        time.sleep(0.05)  # after the run seeded the generator, before it draws: others would reseed here
        return original(*args, **kwargs)

    monkeypatch.setattr(models, "create_model", slow_create_model)
    configs = [TrainConfig(data=f"{tiny_data}:train", arch="mlp-tiny", steps=10, device="cpu", seed=s).validate() for s in range(4)]

    def weights(cfg, name):
        trainer = Trainer(cfg, tmp_path / name, progress=False)
        trainer.setup(None)
        return trainer.model.state_dict()

    alone = [weights(cfg, f"alone-{k}") for k, cfg in enumerate(configs)]
    together, barrier = [None] * 4, threading.Barrier(4)

    def build(k):
        barrier.wait()
        together[k] = weights(configs[k], f"together-{k}")

    threads = [threading.Thread(target=build, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for a, b in zip(alone, together):
        assert all(torch.equal(a[name], b[name]) for name in a)
    first = next(iter(alone[0]))
    assert not torch.equal(alone[0][first], alone[1][first])  # the seeds differ


def _out_of_memory(kind: str = "allocator") -> RuntimeError:
    if kind == "allocator":
        return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return RuntimeError("CUDA error: out of memory")  # a CUDA call's own (cuBLAS workspace, graph instantiation)


@pytest.mark.parametrize("kind", ["allocator", "cuda call"])
def test_a_cell_out_of_gpu_memory_beside_others_starts_again_once_one_ends(kind):
    """The study's threads share one GPU's memory: a cell that runs out while another runs waits for
    that one to end, then starts again (from its last.pt, for a run) instead of failing."""
    events, b_started = [], threading.Event()

    def fn(cell):
        if cell == "b":
            b_started.set()
            time.sleep(0.3)  # still running when a runs out
            events.append("b ends")
            return {"cell": "b"}
        attempt = events.count("a starts") + 1
        events.append("a starts")
        if attempt == 1:
            assert b_started.wait(5)
            raise _out_of_memory(kind)
        return {"cell": "a", "attempt": attempt}

    outcomes = dict(ThreadExecutor(workers=2).map_cells(fn, ["a", "b"]))
    assert outcomes == {"a": {"cell": "a", "attempt": 2}, "b": {"cell": "b"}}
    assert events == ["a starts", "b ends", "a starts"]


def test_a_cell_out_of_gpu_memory_alone_fails_at_once_and_other_errors_are_not_retried():
    calls, b_started = [], threading.Event()

    def fn(cell):
        calls.append(cell)
        if cell == "b":
            b_started.set()
            time.sleep(0.3)
            return {"cell": "b"}
        if cell == "other":  # raised while b runs: retried if it were taken for running out of memory
            assert b_started.wait(5)
            raise RuntimeError("shape mismatch")
        raise _out_of_memory()

    outcomes = dict(ThreadExecutor(workers=2).map_cells(fn, ["a"]))
    assert calls == ["a"]
    assert isinstance(outcomes["a"], CellError) and outcomes["a"].message.startswith("OutOfMemoryError: CUDA out of memory")
    calls.clear()
    outcomes = dict(ThreadExecutor(workers=2).map_cells(fn, ["other", "b"]))
    assert sorted(calls) == ["b", "other"] and outcomes["other"].message == "RuntimeError: shape mismatch"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_study_trains_and_evaluates_in_threads_on_gpu_without_the_default_generator(write_spec, tmp_path):
    """Groups train, then cells sample (graph solvers captured beside other threads' work) and
    evaluate with exact NLL, all in threads of one process on one GPU. Nothing may draw from torch's
    default CUDA generator: while any thread records a graph, a draw from it elsewhere fails."""
    replace = {'device = "cpu"': 'device = "cuda"', "straightness_rows = 32": 'straightness_rows = 32\nnll = "exact"\nnll_rows = 32\nnll_steps = 4'}
    spec = write_spec("tiny-gpu-threads", extra="", **replace)
    before = torch.cuda.get_rng_state()
    results = run_study(spec, tmp_path / "study", executor="threads", workers=4, group_size=2, progress=False)
    assert len(results) == 4  # the done cells: none failed
    assert all(row["nll"] == row["nll"] for row in results)  # exact NLL computed
    assert torch.equal(torch.cuda.get_rng_state(), before)
