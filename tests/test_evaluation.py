"""Evaluation end to end: the test split as default reference, NLL beside the Gaussian fits, sanity lines."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from flowstudy.cli import main
from flowstudy.data.resolve import default_test_spec
from flowstudy.evaluation import default_reference_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def test_builtin_reference_is_the_test_split():
    assert default_test_spec("builtin:sonar-gsm8k-1k") == "builtin:sonar-gsm8k-1k:test"
    assert default_reference_spec("builtin:sonar-gsm8k-1k:train") == "builtin:sonar-gsm8k-1k:test"
    assert default_test_spec("builtin:sonar-gsm8k-1k:val") is None  # only a training split has a test beside it


def test_directory_reference_falls_back_to_val_then_none(tmp_path):
    rows = np.zeros((8, 4), dtype=np.float32)
    np.save(tmp_path / "train.npy", rows)
    assert default_reference_spec(f"{tmp_path}:train") is None
    np.save(tmp_path / "val.npy", rows)
    assert default_reference_spec(f"{tmp_path}:train") == f"{tmp_path}:val"
    assert default_reference_spec(f"{tmp_path}:train", "other.npy") == "other.npy"
    np.save(tmp_path / "test.npy", rows)
    assert default_reference_spec(f"{tmp_path}:train", "other.npy") == f"{tmp_path}:test"



@pytest.fixture(scope="module")
def run_with_test_split(tiny_data, tmp_path_factory):
    """A tiny run trained through the CLI on a data folder that also holds a test split."""
    root = tmp_path_factory.mktemp("eval-data")
    for split in ("train", "val"):
        shutil.copy(tiny_data / f"{split}.npy", root / f"{split}.npy")
    train = np.load(root / "train.npy")
    np.save(root / "test.npy", train[:48] + np.float32(0.001))  # 48 rows near the training data
    run = root / "run"
    args = ["train", "--data", f"{root}:train", "--arch", "mlp-tiny", "--steps", "30", "--batch-size", "32",
            "--device", "cpu", "--out", str(run), "--quiet"]
    assert main(args) == 0
    return run, root


def test_evaluate_nll_on_the_test_split(run_with_test_split, capsys):
    run, root = run_with_test_split
    args = ["evaluate", str(run), "--n", "48", "--device", "cpu", "--nll", "--nll-rows", "16", "--nll-steps", "4", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reference"] == str(root / "test.npy")  # not val, which chose the checkpoint
    details = result["nll_details"]
    # auto on CPU: the recipe's subspace residual has an exact divergence of k VJPs, so auto takes it
    assert details["estimator"] == "exact" and details["nfe"] == 16 and details["model"]["n_rows"] == 16
    assert main(args + ["--nll-graph"]) == 0  # on the CPU: the same solves, no graph to record
    graph = json.loads(capsys.readouterr().out)["nll_details"]
    assert graph["model"]["nats_per_dim"] == details["model"]["nats_per_dim"] and not graph["graph"]
    assert main(args + ["--nll-estimator", "hutchinson", "--nll-graph"]) == 2
    assert "graph NLL replays the exact divergence only" in capsys.readouterr().err
    assert main(args + ["--nll-estimator", "hutchinson"]) == 0
    hutchinson = json.loads(capsys.readouterr().out)["nll_details"]
    assert hutchinson["estimator"] == "hutchinson" and hutchinson["probes"] == 4 and hutchinson["model"]["std_error"] > 0
    assert hutchinson["model"]["nats_per_dim"] == pytest.approx(details["model"]["nats_per_dim"], abs=6 * hutchinson["model"]["std_error"] + 1e-3)
    assert result["nll"]["model"] == pytest.approx(details["model"]["nats_per_dim"])
    assert set(result["sanity"]) >= {"fidelity", "c2st_auc", "c2st_knn_auc"}
    verdict_flag = any("by held-out NLL" in f for f in result["flags"])
    assert verdict_flag == (not details["beats_gaussian"])


def test_nll_of_a_samples_file_is_a_one_line_error(run_with_test_split, tmp_path, capsys):
    _, root = run_with_test_split
    np.save(tmp_path / "s.npy", np.load(root / "test.npy"))
    assert main(["evaluate", str(tmp_path / "s.npy"), "--train", f"{root}:train", "--nll"]) == 2
    assert "the held-out NLL (nll) needs a run, not samples" in capsys.readouterr().err


def test_the_rendered_table_marks_metrics_that_fail_the_sanity_check(capsys):
    from flowstudy.api import Evaluation
    from flowstudy.cli import render_evaluation
    from flowstudy.evaluation import EvaluationResult
    from flowstudy.metrics import EvaluationTable

    def check(metric, passes):
        return {"metric": metric, "passes": passes, "margins": [3.0, 3.0], "reason": "", "values": [1.0, 1.2, 1.3]}

    rows = {"model": {"fidelity": 1.1, "mmd": 0.01}, "gaussian": {"fidelity": 1.2, "mmd": 0.001}}
    table = EvaluationTable(rows, 10, 5, 80, 10, 0, 20, 5, sanity={"fidelity": check("fidelity", True), "mmd": check("mmd", False)})
    render_evaluation(Evaluation(EvaluationResult(table, "s.npy", "train", "test", 1.0, None)), "t")
    out = capsys.readouterr().out
    assert "mmd †" in out and "fidelity †" not in out and "shown, not ranked" in out
