"""A run's StopRequest (flowstudy.train.stopping) stops real training at a step's end, resumably."""

from __future__ import annotations

import signal
import threading

import pytest
import torch

from flowstudy.train import StackedGroup, Trainer, TrainingInterrupted, load_checkpoint
from flowstudy.train.stopping import StopRequest, stop_on_signals, stop_threaded_runs


class _StopAt:
    """Asks the run to stop at its validation of ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_validation(self, trainer, step, val_loss):
        if step == self.step:
            trainer.stop.request(signal.SIGTERM)


def test_a_stop_request_ends_the_run_after_its_step_and_it_resumes_to_the_whole_run(tmp_path, tiny_config):
    cfg = tiny_config(steps=30, val_every=10)
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    with pytest.raises(TrainingInterrupted, match=r"interrupted by SIGTERM at step 11/30"):
        Trainer(cfg, tmp_path / "cut", callbacks=[_StopAt(10)], progress=False).fit()
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers  # the run's handlers are gone
    state = load_checkpoint(tmp_path / "cut/checkpoints/last.pt")
    assert state["step"] == 11 and not state["finished"]
    Trainer(cfg, tmp_path / "cut", progress=False).fit(resume=True)
    Trainer(cfg, tmp_path / "whole", progress=False).fit()
    a, b = (load_checkpoint(tmp_path / name / "checkpoints/last.pt")["model"] for name in ("whole", "cut"))
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_signals_set_the_request_in_the_main_thread_only_while_watched():
    request = StopRequest()
    with stop_on_signals(request):
        signal.raise_signal(signal.SIGINT)  # the handler runs before raise_signal returns
    assert request.requested and request.name == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stop_threaded_runs_reaches_requests_watched_in_other_threads():
    requests = [StopRequest(), StopRequest()]
    inside, release = threading.Barrier(2), threading.Event()

    def watch():
        with stop_on_signals(requests[0]):
            inside.wait()
            release.wait(30)

    thread = threading.Thread(target=watch)
    thread.start()
    inside.wait()
    try:
        stop_threaded_runs(signal.SIGTERM)
        assert requests[0].name == "SIGTERM"
        with stop_on_signals(requests[1]):  # the main thread's run: signals, not the threads' request
            assert not requests[1].requested
    finally:
        stop_threaded_runs(None)
        release.set()
        thread.join(30)


def test_a_groups_members_share_one_request(tmp_path, tiny_config):
    configs = [tiny_config(seed=s, steps=20, val_every=5) for s in (0, 1)]
    group = StackedGroup(configs, [tmp_path / "a", tmp_path / "b"])
    assert all(m.stop is group.stop for m in group.members)
    group.members[1].callbacks.append(_StopAt(5))  # a stop asked of one member stops the group
    with pytest.raises(TrainingInterrupted, match="interrupted at group step 6"):
        group.fit()
    assert [load_checkpoint(tmp_path / name / "checkpoints/last.pt")["step"] for name in "ab"] == [6, 6]
