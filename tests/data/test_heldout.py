"""Evaluation from one file: the seeded test rows a run holds out of it, fs.split, fs.evaluate and
`flowstudy evaluate RUN` without a reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

import flowstudy as fs
from flowstudy.cli import main
from flowstudy.data.resolve import load_config_splits

FAST = {"arch": "mlp-tiny", "steps": 20, "batch_size": 64, "val_every": 20, "device": "cpu", "recipe": "none", "progress": False}


@pytest.fixture(scope="module")
def one_file(tmp_path_factory):
    """300 rows of 16-D data in one .npy, with texts: no split beside it."""
    folder = tmp_path_factory.mktemp("one-file")
    rows = np.random.default_rng(3).normal(size=(300, 16)).astype(np.float32)
    np.save(folder / "all.npy", rows)
    (folder / "all.txt").write_text("".join(f"row {i}\n" for i in range(300)))
    return folder / "all.npy"


def _keys(rows: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in rows}


def test_split_is_seeded_and_partitions_the_rows(one_file):
    train, test = fs.split(str(one_file), test=0.1, seed=0)
    again, other = fs.split(np.load(one_file), test=0.1, seed=0), fs.split(str(one_file), test=0.1, seed=1)
    assert (train.n, test.n) == (270, 30) and np.array_equal(again[1].embeddings, test.embeddings)
    assert not np.array_equal(other[1].embeddings, test.embeddings)
    assert _keys(train.embeddings) | _keys(test.embeddings) == _keys(np.load(one_file)) and not _keys(train.embeddings) & _keys(test.embeddings)
    assert test.texts[0].startswith("row ") and test.source == f"{one_file}[test]"
    with pytest.raises(ValueError, match="the test fraction must lie in \\(0, 1\\); got 1.5"):
        fs.split(str(one_file), test=1.5)


def test_a_one_file_run_never_sees_its_test_rows_and_evaluates_on_them(one_file, tmp_path, capsys):
    run = fs.fit(str(one_file), out=tmp_path / "run", **FAST)
    assert (run.config["test_fraction"], run.config["test_seed"]) == (0.1, 0)
    train, val = load_config_splits(run.config)
    _, test = fs.split(str(one_file), test=0.1, seed=0)
    assert (train.n, val.n) == (243, 27)  # 270 rows left, 10 % of them validate
    assert not (_keys(train.embeddings) | _keys(val.embeddings)) & _keys(test.embeddings)

    result = fs.evaluate(run, n=64, device="cpu")
    assert result.reference == f"{one_file}[test]" and result.train == f"{one_file}[train][train]"
    assert main(["evaluate", str(run.path), "--n", "64", "--device", "cpu", "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    assert from_cli["reference"] == result.reference and from_cli["rows"] == result.to_dict()["rows"]
    # the same rows given explicitly give the same table
    explicit = fs.evaluate(run, n=64, device="cpu", reference=test, train=train)
    assert explicit.table.rows == result.table.rows


def test_without_held_out_rows_the_error_says_what_to_do(one_file, tmp_path):
    run = fs.fit(str(one_file), out=tmp_path / "run", test_fraction=0.0, **FAST)
    with pytest.raises(ValueError, match="no held-out reference found"):
        fs.evaluate(run, n=16, device="cpu")
