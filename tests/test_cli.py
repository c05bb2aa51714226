"""The command line end to end on a tiny data set: train, sample, reconstruct, evaluate, and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowstudy.cli import main
from flowstudy.train.config import RECIPES


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    """One run trained through the CLI with the Gaussian base field: (run dir, data dir)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    code = main(
        ["train", "--data", f"{tiny_data}:train", "--arch", "mlp-tiny", "--steps", "40", "--batch-size", "32",
         "--device", "cpu", "--base-field", "gaussian", "--recipe", "sonar", "--out", str(run), "--quiet"]
    )
    assert code == 0
    return run, tiny_data


def test_train_writes_a_run_with_the_resolved_config(trained):
    run, _ = trained
    config = json.loads((run / "config.json").read_text())
    assert config["base_field"] == "gaussian" and config["steps"] == 40 and config["arch"] == "mlp-tiny"
    assert config["aug"] == RECIPES["mlp"]["aug"] and config["flow"] == RECIPES["mlp"].get("flow", "icfm")  # the mlp recipe's
    assert (run / "checkpoints" / "best.pt").exists() and (run / "checkpoints" / "last.pt").exists()


def test_sample_reconstruct_evaluate(trained, tmp_path, capsys):
    run, data = trained
    out = tmp_path / "s.npy"
    assert main(["sample", str(run), "--n", "64", "--out", str(out), "--device", "cpu"]) == 0
    x = np.load(out)
    assert x.dtype == np.float32 and x.shape == (64, 16)
    assert abs(float(x.mean()) - 0.05) < 0.05  # original space (the data sit around 0.05), not z-scores
    capsys.readouterr()
    # Round trip through the whole field (base + network): the ODE map is invertible
    assert main(["reconstruct", str(run), "--data", f"{data}:val", "--steps", "20", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 64 and report["cosine_mean"] > 0.999 and report["relative_error_mean"] < 0.02
    # evaluate draws the same 64 samples (seed 0, Euler 50): its norm ratio is theirs over the held-out rows'
    assert main(["evaluate", str(run), "--n", "64", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    held = np.load(data / "val.npy")
    expected = np.linalg.norm(x, axis=1).mean() / np.linalg.norm(held, axis=1).mean()
    assert result["original_norm_ratio"] == pytest.approx(float(expected), rel=1e-5)
    assert result["nfe"] == 50 and result["reference"] == str(data / "val.npy")


def test_user_errors_are_one_line_with_exit_code_2(trained, capsys):
    run, data = trained
    assert main(["train", "--bogus-flag"]) == 2
    err = capsys.readouterr().err
    assert "No such option: --bogus-flag" in err and "internal error" not in err
    assert main(["train", "--data", f"{data}:train", "--arch", "transformer-xl", "--out", str(run.parent / "x")]) == 2
    assert "unknown architecture 'transformer-xl'" in capsys.readouterr().err
    assert main(["train", "--data", f"{data}:train", "--arch", "mlp-tiny", "--base-field", "laplace", "--out", str(run.parent / "y")]) == 2
    assert "base_field must be one of none, gaussian; got 'laplace'" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume"]) == 2
    assert "already finished" in capsys.readouterr().err
