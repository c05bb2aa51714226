"""``fs.optimize`` and ``fs.ask_tell``: the Python front door to the optimisation loop, the same
evaluations as the command line, the best embedding and its nearest text, resume, ask/tell."""

from __future__ import annotations

import json

import numpy as np
import pytest

import flowstudy as fs
from flowstudy.cli import main
from flowstudy.errors import ConfigError, DataError
from flowstudy.guidance.objectives import parse_objective

SETTINGS = dict(method="prior", budget=9, q=3, n_init=3, steps=4, pca=3)


def test_optimize_returns_every_evaluation_and_the_best(tiny_data, tmp_path):
    prior, objective = f"gaussian:{tiny_data}:train", f"cosine:{tiny_data}:val:3"
    rounds = []
    result = fs.optimize(prior, objective, out=tmp_path / "py", seed=2, on_round=lambda r: rounds.append(len(r.y)), **SETTINGS)
    assert result.x.shape == (9, 16) and result.y.shape == (9,) and rounds == [3, 6, 9]
    # the scores are the objective's on the stored embeddings (scored 3 rows at a time there, 9 here:
    # float64 sums over D = 16 in another order, so within D ulps), and the best is their maximum
    np.testing.assert_allclose(result.y, parse_objective(objective).fn(result.x), rtol=16 * np.finfo(np.float64).eps, atol=0)
    assert result.best_score == result.y.max() and np.array_equal(result.best_x, result.x[int(np.argmax(result.y))])
    log = [json.loads(line) for line in (tmp_path / "py" / "evaluations.jsonl").read_text().splitlines()]
    assert result.best_texts["nearest_train_row"] == log[result.best_index]["nearest_train_row"]
    np.testing.assert_array_equal(result.best_so_far, np.maximum.accumulate(result.y))
    # the command line is this same call
    args = ["optimize", "run", prior, "--objective", objective, "--out", str(tmp_path / "cli"), "--seed", "2", "--quiet",
            "--method", "prior", "--budget", "9", "--q", "3", "--n-init", "3", "--steps", "4", "--pca", "3"]
    assert main(args) == 0
    with np.load(tmp_path / "cli" / "evaluations.npz") as cli:
        np.testing.assert_array_equal(cli["x"], result.x)
    # a function objective scores the same; calling again resumes without new evaluations
    as_function = fs.optimize(prior, parse_objective(objective).fn, out=tmp_path / "fn", seed=2, **SETTINGS)
    np.testing.assert_array_equal(as_function.y, result.y)
    again = fs.optimize(prior, objective, out=tmp_path / "py", seed=2, **SETTINGS)
    np.testing.assert_array_equal(again.y, result.y)


def test_ask_tell_from_python(tiny_data, tmp_path):
    loop = fs.ask_tell(tmp_path / "ext", prior=f"gaussian:{tiny_data}:train", **{**SETTINGS, "n_init": 2})
    first = loop.ask()
    assert first.x.shape == (2, 16) and len(first.texts) == 2 and "text" in first.texts[0]
    assert np.array_equal(loop.ask().x, first.x)  # asked again before telling: the same candidates
    with pytest.raises(DataError, match="expected 2 scores"):
        loop.tell([0.1])
    result = loop.tell([0.1, 0.7])
    assert result.best_score == 0.7 and result.best_index == 1 and np.array_equal(result.best_x, first.x[1])
    reopened = fs.ask_tell(tmp_path / "ext")  # no prior needed once it exists
    assert reopened.ask(q=3).x.shape == (3, 16)
    with pytest.raises(ConfigError, match="not an optimisation directory"):
        fs.ask_tell(tmp_path / "none")
    with pytest.raises(ConfigError, match="unknown optimisation setting.*budjet; valid: budget"):
        fs.ask_tell(tmp_path / "bad", prior=f"gaussian:{tiny_data}:train", budjet=3)
    assert not (tmp_path / "bad").exists()
