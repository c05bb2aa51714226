"""``flowstudy optimize`` end to end on a Gaussian prior of the tiny data set: run, resume, ask/tell, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowstudy.cli import main

pytest.importorskip("botorch")

FAST = ["--budget", "10", "--q", "3", "--n-init", "4", "--steps", "6", "--pca", "3", "--opt", "n_candidates=32"]


def test_optimize_run_resume_ask_tell_and_report(tiny_data, tmp_path, capsys):
    prior = f"gaussian:{tiny_data}:train"
    objective = f"cosine:{tiny_data}:val:3"
    out = tmp_path / "opt"
    args = ["optimize", "run", prior, "--objective", objective, "--method", "guided", "--seed", "1", "--out", str(out), "--quiet"]
    assert main(args + FAST[:1] + ["7"] + FAST[2:]) == 0  # a first run stopped at 7 evaluations ...
    assert main(args + FAST) == 0  # ... goes on to 10
    assert "10 evaluations" in capsys.readouterr().out
    log = [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines()]
    assert len(log) == 10 and all("nearest_train_row" in rec and "text" in rec for rec in log)
    ask = tmp_path / "ask"
    # the run's method: one method across both directories of the report
    assert main(["optimize", "ask", str(ask), "--prior", prior, "--method", "guided", "--q", "2", "--n-init", "2", "--steps", "6", "--pca", "3"]) == 0
    x = np.load(ask / "pending.npy")
    assert x.shape == (2, 16) and x.dtype == np.float32
    assert main(["optimize", "tell", str(ask), "0.5"]) == 2
    assert "expected 2 scores" in capsys.readouterr().err
    assert main(["optimize", "tell", str(ask), "0.5,0.25"]) == 0
    assert main(["optimize", "report", str(out), str(ask), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "Final best per objective after 100 evaluations" in report  # the ask/tell state's budget
    assert "How real the proposals are" in report and "Gaussian fit" in report
    assert (tmp_path / "best_so_far.png").stat().st_size > 0 and (tmp_path / "report.html").exists()


def test_optimize_errors_are_one_line(tiny_data, tmp_path, capsys):
    prior = f"gaussian:{tiny_data}:train"
    assert main(["optimize", "run", prior, "--objective", "cosine:nope", "--out", str(tmp_path / "a")]) == 2
    assert main(["optimize", "run", prior, "--objective", f"cosine:{tiny_data}:val:3", "--method", "nope", "--out", str(tmp_path / "b")]) == 2
    assert main(["optimize", "tell", str(tmp_path / "c"), "1"]) == 2
    err = capsys.readouterr().err
    assert "expected cosine:DATASPEC:ROW" in err and "unknown method 'nope'" in err and "not an optimisation directory" in err
