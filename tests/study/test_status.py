"""A study's status file, and a grouped study killed (SIGKILL) in training and in evaluation, then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from flowstudy.errors import ConfigError
from flowstudy.study import LocalExecutor, run_study
from flowstudy.study.status import STATUS_FILE, StudyStatus, describe, read_status


def test_status_file_follows_the_phases(tmp_path):
    status = StudyStatus(tmp_path, "s", cells_total=6, cells_done=1, workers=2)
    first = json.loads((tmp_path / STATUS_FILE).read_text())
    assert first["state"] == "running" and first["cells"] == {"total": 6, "done": 1, "failed": 0, "running": 0, "todo": 5}
    status.phase("training", [2, 2, 1])
    record = json.loads((tmp_path / STATUS_FILE).read_text())
    assert record["tasks"] == {"phase": "training", "total": 3, "done": 0, "failed": 0, "running": 2}
    assert record["cells"]["running"] == 0  # training runs are not cells yet
    assert record["eta_phase_s"] is None  # nothing to extrapolate from before a task ends
    status.task_done(failed=True)
    record = json.loads((tmp_path / STATUS_FILE).read_text())
    assert record["tasks"]["done"] == 1 and record["tasks"]["failed"] == 1 and record["eta_phase_s"] >= 0
    status.phase("evaluation", [3, 2])
    record = json.loads((tmp_path / STATUS_FILE).read_text())
    assert record["phases"]["training"]["complete"] and not record["phases"]["evaluation"]["complete"]
    assert record["cells"] == {"total": 6, "done": 1, "failed": 0, "running": 5, "todo": 0}  # both tasks fit 2 workers
    status.task_done(cells_done=2, cells_failed=1, failed=True)
    record = json.loads((tmp_path / STATUS_FILE).read_text())
    assert record["cells"] == {"total": 6, "done": 3, "failed": 1, "running": 2, "todo": 0}
    status.task_done(cells_done=2)
    status.finish("failed")
    record = read_status(tmp_path)
    assert record["state"] == "failed" and record["phase"] == "done" and record["eta_phase_s"] is None
    assert record["cells"] == {"total": 6, "done": 5, "failed": 1, "running": 0, "todo": 0}
    line = describe(record)
    assert line.startswith("study s (failed): done; cells 5/6 done, 0 running, 1 failed")
    assert line.index("training") < line.index("evaluation")


def test_a_running_status_whose_process_is_gone_reads_stopped(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    StudyStatus(tmp_path, "s", 1, 0, 1)
    record = json.loads((tmp_path / STATUS_FILE).read_text())
    record["pid"] = proc.pid  # a finished process: as a study killed with SIGKILL leaves its file
    (tmp_path / STATUS_FILE).write_text(json.dumps(record))
    assert read_status(tmp_path)["state"] == "stopped"
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nothing' / STATUS_FILE}: no status file"):
        read_status(tmp_path / "nothing")
    (tmp_path / STATUS_FILE).write_text("{")
    with pytest.raises(ConfigError, match="not a status file"):
        read_status(tmp_path)


@pytest.fixture(scope="module")
def grouped_study(write_spec, tmp_path_factory):
    """The tiny study (2 flows x 2 seeds) in stacked groups of 2, run through once: (spec path, study dir, results)."""
    spec_path = write_spec("tinygroups", extra="")
    study_dir = tmp_path_factory.mktemp("grouped") / "tinygroups"
    results = run_study(spec_path, study_dir, executor=LocalExecutor(workers=1), progress=False, group_size=2, report=True)
    return spec_path, study_dir, results


def _wait_for(condition, proc, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"the study ended before {what}"
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        time.sleep(0.05)


def _kill_when(spec_path, study_dir, condition, what: str) -> None:
    """Run ``flowstudy study`` (worker processes, groups of 2) and SIGKILL its process group once ``condition()``."""
    command = [sys.executable, "-m", "flowstudy.cli", "study", str(spec_path), "--out", str(study_dir), "--group-size", "2",
               "--executor", "local", "--workers", "1", "--quiet"]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(condition, proc, what)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _report_without_costs(study_dir) -> str:
    """report.md without its date and its cost table (wall seconds differ from run to run)."""
    text = (study_dir / "report.md").read_text()
    start = text.index("### Training and sampling cost")
    text = text[:start] + text[text.index("\n## ", start):]
    return "\n".join(line for line in text.splitlines() if not line.startswith("_Written"))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_grouped_study_killed_in_training_and_in_evaluation_ends_with_the_same_report(grouped_study, same_table, tmp_path):
    from flowstudy.study.store import STORE_NAME, ResultStore

    spec_path, reference_dir, reference = grouped_study
    study_dir = tmp_path / "tinygroups"

    def training_checkpoint() -> bool:  # a run has its first resumable checkpoint: mid-training
        return any(study_dir.glob("runs/*/checkpoints/last.pt"))

    _kill_when(spec_path, study_dir, training_checkpoint, "a training checkpoint")
    assert read_status(study_dir)["state"] == "stopped" and read_status(study_dir)["phase"] == "training"

    def done_rows() -> dict:
        try:
            return {k: v for k, v in ResultStore(study_dir / STORE_NAME).rows().items() if v["status"] == "done"}
        except Exception:  # not created yet, or being created
            return {}

    _kill_when(spec_path, study_dir, lambda: bool(done_rows()), "an evaluated cell")
    before = done_rows()
    assert 1 <= len(before) < len(reference) and read_status(study_dir)["state"] == "stopped"

    results = run_study(spec_path, study_dir, executor=LocalExecutor(workers=1), progress=False, group_size=2, report=True)
    after = ResultStore(study_dir / STORE_NAME).rows()
    for cell_id, row in before.items():  # evaluated cells were not evaluated again
        assert after[cell_id]["finished_at"] == row["finished_at"]
    assert read_status(study_dir)["state"] == "finished"
    same_table(results, reference)
    assert _report_without_costs(study_dir) == _report_without_costs(reference_dir)
