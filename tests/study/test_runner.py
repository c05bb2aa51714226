"""Running studies for real: outputs of a cell, resumption after a kill, failed cells, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from flowstudy.study import LocalExecutor, ResultStore, load_spec, run_study
from flowstudy.study.cell import train_run
from flowstudy.study.store import STORE_NAME


def test_a_study_writes_every_cell_and_its_exports(reference_study, tiny_data):
    spec_path, study_dir, results = reference_study
    spec = load_spec(spec_path)
    heldout_norm = float(np.linalg.norm(np.load(tiny_data / "val.npy"), axis=1).mean())
    assert [r["id"] for r in results] == [c.id for c in spec.cells]
    assert (study_dir / "spec.toml").read_text() == spec_path.read_text()
    assert [c["id"] for c in json.loads((study_dir / "study.json").read_text())["cells"]] == [c.id for c in spec.cells]
    for cell, r in zip(spec.cells, results):
        assert (r["group"], r["seed"], r["flow"], r["arch"]) == (cell.group, cell.seed, cell.config.flow, "mlp-tiny")
        assert r["train_steps"] == r["total_steps"] == 30 and r["nfe"] == 16  # the default midpoint rule: two evaluations per step
        samples = np.load(study_dir / "cells" / cell.id / "samples.npy")
        assert samples.dtype == np.float32 and samples.shape == (64, 16)
        # original space: the data live around 0.05 with a spread of ~0.03, not z-scores
        assert abs(float(samples.mean()) - 0.05) < 0.05 and float(samples.std()) < 0.2
        # the original-space norm ratio: the saved samples against the held-out rows as stored
        assert r["original_norm_ratio"] == pytest.approx(float(np.linalg.norm(samples, axis=1).mean()) / heldout_norm, rel=1e-5)
        evaluation = json.loads((study_dir / "cells" / cell.id / "evaluation.json").read_text())
        assert evaluation["original_norm_ratio"] == pytest.approx(r["original_norm_ratio"])
        assert evaluation["rows"]["model"]["fidelity"] == pytest.approx(r["fidelity"])
        assert r["baseline_gaussian_fidelity"] == pytest.approx(evaluation["rows"]["gaussian"]["fidelity"])
        # the held-out reference row is real data: fidelity and novelty are 1 by construction
        assert r["baseline_heldout_fidelity"] == pytest.approx(1.0) and r["baseline_heldout_novelty"] == pytest.approx(1.0)
        ranked = [m for m in evaluation["sanity"] if r[f"sanity_{m}"] == 1]
        assert r["beats_gaussian"] == (all(r[f"beats_gaussian_{m}"] for m in ranked) if ranked else None)
        assert r["straightness"] >= 0 and isinstance(r["flags"], list)
    # every cell, the subset ones included, is evaluated against the full training set and the
    # same held-out set in one space: identical baselines
    assert [r["subset"] for r in results] == [None, None, None, None, 100, 100]
    assert {r["n_train_eval"] for r in results} == {256} and {r["n_heldout"] for r in results} == {64}
    assert len({r["baseline_gaussian_mmd"] for r in results}) == 1
    lines = (study_dir / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [r["id"] for r in results]
    assert (study_dir / "results.csv").read_text().count("\n") == len(results) + 1


def test_a_killed_study_resumes_without_redoing_cells(reference_study, same_table, tmp_path):
    """SIGKILL the whole study (runner and workers) once a cell is recorded, then run it again."""
    spec_path, _, reference = reference_study
    study_dir = tmp_path / "killed"
    script = (
        "from flowstudy.study import LocalExecutor, run_study\n"
        f"run_study({str(spec_path)!r}, {str(study_dir)!r}, executor=LocalExecutor(workers=2), progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _done_rows(study_dir):
            assert proc.poll() is None, "the study ended before it could be killed"
            assert time.monotonic() < deadline, "no cell was recorded in time"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = _done_rows(study_dir)
    assert 1 <= len(before) < len(reference)

    results = run_study(spec_path, study_dir, executor=LocalExecutor(workers=2), progress=False)
    after = ResultStore(study_dir / STORE_NAME).rows()
    for cell_id, row in before.items():  # finished cells were not run again
        assert after[cell_id]["finished_at"] == row["finished_at"] and after[cell_id]["attempts"] == 1
    assert all(row["status"] == "done" and row["attempts"] == 1 for row in after.values())
    same_table(results, reference)


def _done_rows(study_dir) -> dict:
    path = study_dir / STORE_NAME
    if not path.exists():
        return {}
    try:
        return {k: v for k, v in ResultStore(path).rows().items() if v["status"] == "done"}
    except Exception:  # the table is being created
        return {}


def test_a_failing_cell_is_recorded_and_retried(write_spec, tmp_path):
    """A subset larger than the data fails at training time; the other cell finishes."""
    spec_path = write_spec(
        "fails",
        extra='[[extra]]\naxes = {subset = [100000], flow = ["icfm"]}\n',
        **{"seeds = [0, 1]": "seeds = [0]", 'flow = ["icfm", "otcfm"]': 'flow = ["icfm"]'},
    )
    spec = load_spec(spec_path)
    good, bad = spec.cells
    study_dir = tmp_path / "fails"
    results = run_study(spec, study_dir, executor=LocalExecutor(workers=1), progress=False)
    assert [r["id"] for r in results] == [good.id]
    store = ResultStore(study_dir / STORE_NAME)
    [failure] = store.failures()
    assert failure["id"] == bad.id and "subset of 100000 rows" in failure["error"]
    assert failure["error"].startswith("DataError") and "Traceback" in failure["traceback"]
    done_at = store.rows()[good.id]["finished_at"]

    run_study(spec, study_dir, executor=LocalExecutor(workers=1), progress=False)  # retries only the failed cell
    rows = store.rows()
    assert rows[bad.id]["status"] == "failed" and rows[bad.id]["attempts"] == 2
    assert rows[good.id]["finished_at"] == done_at and rows[good.id]["attempts"] == 1


class _StopAt:
    """Raises after the validation at ``step`` (its last.pt is written): an interrupted run."""

    def __init__(self, step: int):
        self.step = step

    def on_validation(self, trainer, step, val_loss):
        if step == self.step:
            raise KeyboardInterrupt


def test_train_run_resumes_an_unfinished_run_and_skips_a_finished_one(write_spec, tmp_path):
    from flowstudy.train import Trainer

    from flowstudy.run import load_run

    config = load_spec(write_spec("tiny")).cells[0].config
    whole = train_run(config, tmp_path / "whole")
    assert not whole["resumed"] and whole["steps"] == 30

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "cut", progress=False, callbacks=[_StopAt(20)]).fit()
    resumed = train_run(config, tmp_path / "cut")
    assert resumed["resumed"] and resumed["steps"] == 30
    assert resumed["best_val_loss"] == pytest.approx(whole["best_val_loss"], rel=1e-6)
    a, b = load_run(tmp_path / "whole", "last", device="cpu"), load_run(tmp_path / "cut", "last", device="cpu")
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q)

    mtime = (tmp_path / "whole" / "checkpoints" / "last.pt").stat().st_mtime_ns
    again = train_run(config, tmp_path / "whole")  # finished: nothing is trained
    assert again == whole and (tmp_path / "whole" / "checkpoints" / "last.pt").stat().st_mtime_ns == mtime


def test_cli_study_and_report_commands(reference_study):
    """`flowstudy study` on a finished study prints the table without running anything."""
    import typer
    from typer.testing import CliRunner

    from flowstudy.cli.study_commands import register

    spec_path, study_dir, _ = reference_study
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["study", str(spec_path), "--out", str(study_dir), "--quiet"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Gaussian fit" in result.output and "otcfm" in result.output and "6/6 cells done" in result.output
    result = runner.invoke(app, ["report", str(study_dir), "--reference", "icfm"])
    assert result.exit_code == 0, result.output
    assert (study_dir / "report.html").exists()


def test_a_cell_with_nll_records_it_beside_the_gaussian_fits(write_spec, tmp_path):
    from flowstudy.study.cell import run_cell

    settings = 'seeds = [0]\nnll = "hutchinson"\nnll_rows = 8\nnll_steps = 2'
    spec = load_spec(write_spec("nll", extra="", **{"seeds = [0, 1]": settings, '["icfm", "otcfm"]': '["icfm"]', "straightness_rows = 32": ""}))
    (cell,) = spec.cells
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 16-D toy: a second thread only waits on a busy CPU
    try:
        r = run_cell(cell, tmp_path / "nll")
    finally:
        torch.set_num_threads(threads)
    assert r["nll_gap"] == pytest.approx(r["nll"] - r["baseline_gaussian_nll"], abs=1e-9)
    assert r["nll_std_error"] > 0 and r["nll_gap_std_error"] > 0
    assert r["beats_gaussian"] == (r["nll_gap"] + 2 * r["nll_gap_std_error"] < 0)  # NLL decides
    assert {k for k in r if k.startswith("sanity_")} >= {"sanity_fidelity", "sanity_margin_fidelity", "sanity_c2st_knn_auc"}
    details = json.loads((tmp_path / "nll" / "cells" / cell.id / "evaluation.json").read_text())["nll_details"]
    assert details["model"]["n_rows"] == 8 and details["nfe"] == 8 and details["estimator"] == "hutchinson"
    assert details["gaussian_diagonal"]["nats_per_dim"] == pytest.approx(r["baseline_gaussian_diagonal_nll"])
