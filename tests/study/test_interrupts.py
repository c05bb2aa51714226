"""SIGINT and SIGTERM stop a study's workers, leave no process behind, say what was saved, and the
next run resumes: real processes (a study in a subprocess, a signal, then /proc)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowstudy.study.cell import TRAIN_SUMMARY

STUDY = """
[study]
name = "interrupt"
seeds = [0, 1]
n_samples = 32
steps = 4
workers = 2
n_splits = 2
n_dist_splits = 2
straightness_rows = 16

[base]
data = "{data}:train"
arch = "mlp-tiny"
recipe = "none"
steps = 3000
batch_size = 32
val_every = 25
device = "cpu"

[axes]
flow = ["icfm"]
"""


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _study(spec: Path, out: Path, executor: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "flowstudy.cli", "study", str(spec), "--out", str(out), "--executor", executor, "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )


def _wait_for(condition, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize(
    "executor, signum, to_group",
    [
        ("local", signal.SIGTERM, False),  # `kill PID`: the parent alone gets it (workers were orphaned)
        ("local", signal.SIGINT, True),  # Ctrl-C: the whole process group gets it
        ("threads", signal.SIGINT, True),
    ],
    ids=["local-SIGTERM-parent", "local-SIGINT-group", "threads-SIGINT-group"],
)
def test_a_signal_stops_every_worker_and_the_rerun_resumes(executor, signum, to_group, tiny_data, tmp_path):
    spec, out = tmp_path / "study.toml", tmp_path / "out"
    spec.write_text(STUDY.format(data=tiny_data))
    study = _study(spec, out, executor)
    checkpoints = lambda: sorted(out.glob("runs/*/checkpoints/last.pt"))  # noqa: E731
    _wait_for(lambda: len(checkpoints()) == 2 or study.poll() is not None, "both cells to train")
    assert study.poll() is None, study.communicate()
    workers = _children(study.pid)
    assert len(workers) >= (2 if executor == "local" else 0)
    (os.killpg if to_group else os.kill)(study.pid, signum)
    _, err = study.communicate(timeout=120)
    assert study.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: 0/2 cells done and saved in {out / 'results.sqlite'}; stopped 2 running cell(s)" in err
    assert "run the same command again to resume" in err
    _wait_for(lambda: not any(_alive(pid) for pid in workers), "the workers to end", seconds=30)
    steps = [json.loads(line)["step"] for run in checkpoints() for line in (run.parents[1] / "metrics.jsonl").read_text().splitlines()]
    assert 0 < max(steps) < 3000  # stopped part-way, with a checkpoint to resume from

    again = _study(spec, out, executor)
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err
    summaries = [json.loads((run.parents[1] / TRAIN_SUMMARY).read_text()) for run in checkpoints()]
    assert [(s["resumed"], s["steps"]) for s in summaries] == [(True, 3000), (True, 3000)]
