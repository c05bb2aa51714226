"""The Python API: the five-line session, in-memory data, parity with the CLI, typed results, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import flowstudy as fs
from flowstudy.cli import main
from flowstudy.data import BUILTIN_DATASETS
from flowstudy.errors import CheckpointError, ConfigError, DataError

FAST = dict(arch="mlp-tiny", steps=30, batch_size=32, val_every=30, device="cpu", progress=False)


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """A run trained from Python on the tiny data set's spec."""
    return fs.fit(f"{tiny_data}:train", out=tmp_path_factory.mktemp("api") / "run", **FAST)


def test_five_line_session_on_the_builtin_set(tmp_path):
    split = "test" if "test" in BUILTIN_DATASETS["sonar-gsm8k-1k"][1] else "val"  # test: 400 rows, where shipped
    train, test = fs.load_dataset("builtin:sonar-gsm8k-1k"), fs.load_dataset(f"builtin:sonar-gsm8k-1k:{split}")
    run = fs.fit(train, arch="mlp-tiny", out=tmp_path / "mlp", steps=20, batch_size=64, val_every=20, device="cpu", progress=False)
    x = run.sample(64, seed=0, steps=5)
    result = fs.evaluate(x, reference=test, train=train)
    assert x.shape == (64, 1024) and x.dtype == np.float32
    # the loaded set is recorded by its spec (not copied), so its val split is found beside it
    assert run.config["data"] == "builtin:sonar-gsm8k-1k:train" and not (tmp_path / "mlp" / "data").exists()
    assert result.source == "<array 64x1024>" and result.reference == f"builtin:sonar-gsm8k-1k:{split}"
    assert list(result.table.rows) == ["model", "gaussian", "noise", "copies", "heldout"]
    assert result.table.rows["copies"]["novelty"] == 0.0  # copies of training rows sit on them
    assert result.original_norm_ratio == pytest.approx(
        np.linalg.norm(x, axis=1).mean() / np.linalg.norm(test.embeddings, axis=1).mean(), rel=1e-6
    )


def test_cli_sample_and_reconstruct_equal_the_api(run, tiny_data, tmp_path, capsys):
    out = tmp_path / "s.npy"
    assert main(["sample", str(run.path), "--n", "40", "--seed", "3", "--steps", "7", "--solver", "heun", "--out", str(out), "--device", "cpu"]) == 0
    drawn = run.draw(40, seed=3, steps=7, solver="heun")
    assert np.array_equal(np.load(out), drawn.x) and np.array_equal(drawn.x, run.sample(40, seed=3, steps=7, solver="heun"))
    assert drawn.nfe == 14  # Heun: two evaluations per step
    assert not np.array_equal(drawn.x, run.sample(40, seed=4, steps=7, solver="heun"))
    capsys.readouterr()
    assert main(["reconstruct", str(run.path), "--data", f"{tiny_data}:val", "--steps", "10", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == run.reconstruct(f"{tiny_data}:val", steps=10).to_dict()


def test_sample_is_the_inverse_standardised_ode_end_point(run):
    drawn = run.draw(16, seed=1, steps=4)
    z64 = torch.as_tensor(drawn.x, dtype=torch.float64)
    back = (z64 - run.standardizer.mean) / run.standardizer.scale
    torch.testing.assert_close(back.float(), drawn.z, rtol=1e-5, atol=1e-5)


def test_arrays_and_tensors_train_and_evaluate_like_their_files(tiny_data, tmp_path):
    train_x, val_x = np.load(tiny_data / "train.npy"), np.load(tiny_data / "val.npy")
    texts = [f"row {i}" for i in range(len(train_x))]
    run = fs.fit(fs.load_dataset(train_x, texts=texts), val=torch.from_numpy(val_x), out=tmp_path / "mem", **FAST)
    saved = tmp_path / "mem" / "data"
    assert np.array_equal(np.load(saved / "train.npy"), train_x) and np.array_equal(np.load(saved / "val.npy"), val_x)
    assert run.config["data"] == str(saved / "train.npy") and run.config["val"] == str(saved / "val.npy")
    assert np.array_equal(fs.load_dataset(run.config["data"]).embeddings, train_x)
    x = run.sample(48, steps=5)
    in_memory = fs.evaluate(x, reference=val_x, train=torch.from_numpy(train_x), seed=1)
    np.save(tmp_path / "x.npy", x)
    from_files = fs.evaluate(str(tmp_path / "x.npy"), reference=f"{tiny_data}:val", train=f"{tiny_data}:train", seed=1)
    assert in_memory.table.rows == from_files.table.rows
    assert (in_memory.source, in_memory.train, in_memory.reference) == ("<array 48x16>", "<tensor 256x16>", "<array 64x16>")
    # each sample's nearest training text: a training row's own text, at distance 0
    matches = run.nearest_texts(train_x[[5, 9]])
    assert [(m.nearest_train_row, m.text) for m in matches] == [(5, "row 5"), (9, "row 9")]
    assert max(m.distance for m in matches) < 1e-9


def test_a_set_is_recorded_by_its_spec_only_when_the_spec_reloads_it(tiny_data, tmp_path):
    from flowstudy.datalike import as_spec

    loaded = fs.load_dataset(f"{tiny_data}:train")
    assert as_spec(loaded, tmp_path, "train") == str(tiny_data / "train.npy") and not list(tmp_path.iterdir())
    # texts the file does not carry, or rows changed in memory, must travel with the run
    with_texts = fs.load_dataset(loaded, texts=[str(i) for i in range(loaded.n)])
    changed = fs.EmbeddingSet(loaded.embeddings * 2, None, loaded.source)
    assert as_spec(with_texts, tmp_path / "a", "train") == str(tmp_path / "a" / "train.npy")
    assert (tmp_path / "a" / "train.jsonl").read_text().splitlines()[3] == '{"text": "3"}'
    assert as_spec(changed, tmp_path / "b", "train") == str(tmp_path / "b" / "train.npy")
    assert np.array_equal(np.load(tmp_path / "b" / "train.npy"), loaded.embeddings * 2)


@pytest.fixture(scope="module")
def evaluation(run):
    return fs.evaluate(run, n=48, steps=5)


def test_cli_evaluate_prints_the_api_result(run, evaluation, capsys):
    assert main(["evaluate", str(run.path), "--n", "48", "--steps", "5", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(evaluation.to_dict()))


def test_evaluation_result_is_typed_and_readable(run, evaluation):
    result = evaluation
    assert result.source == str(run.path) and result.nfe == 2 * 5  # the default midpoint rule: two evaluations a step
    text = repr(result)
    assert text.splitlines()[0].startswith(f"Evaluation of {run.path} vs ")
    assert all(row in text for row in ("model", "gaussian", "noise", "copies", "heldout"))
    assert "mean sample norm / mean held-out norm (original space)" in text
    assert all(f"FLAG: {flag}" in text for flag in result.flags)
    page = result._repr_html_()  # what a notebook shows
    assert page.count("<tr>") == 6 and f"<td>{result.table.rows['gaussian']['fidelity']:.4g}</td>" in page
    as_dict = json.loads(json.dumps(result.to_dict()))
    assert as_dict["rows"]["model"]["fidelity"] == pytest.approx(result.table.rows["model"]["fidelity"])


def test_to_frame_has_one_row_per_sampler_or_says_what_to_install(evaluation, monkeypatch):
    result = evaluation
    try:
        import pandas  # noqa: F401
    except ImportError:
        pass
    else:
        frame = result.to_frame()
        assert list(frame.index) == ["model", "gaussian", "noise", "copies", "heldout"]
        assert frame.loc["model", "fidelity"] == result.table.rows["model"]["fidelity"]
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        result.to_frame()


def test_bad_input_gets_one_clear_error(run, tmp_path):
    with pytest.raises(DataError, match="got list"):
        fs.load_dataset([[0.0, 1.0]])
    with pytest.raises(DataError, match=r"<array 3x4>: 2 texts for 3 embedding rows"):
        fs.load_dataset(np.zeros((3, 4)), texts=["a", "b"])
    with pytest.raises(DataError, match=r"<array 2x4>: .*non-finite|<array 2x4>.*NaN"):
        fs.load_dataset(np.array([[0.0, 1, 2, 3], [np.nan, 0, 0, 0]]))
    with pytest.raises(CheckpointError, match="no such run directory"):
        fs.load_run(tmp_path / "missing")
    with pytest.raises(ConfigError, match="n must be >= 1"):
        run.sample(0)
    with pytest.raises(DataError, match="dimension"):
        run.reconstruct(np.zeros((4, 8), dtype=np.float32))
    with pytest.raises(ConfigError, match="unknown option"):
        fs.fit(np.zeros((40, 16), dtype=np.float32), out=tmp_path / "bad", lrate=0.1, **FAST)


def test_import_is_lazy_and_names_resolve():
    code = "import sys, flowstudy as fs; assert 'torch' not in sys.modules; fs.Run; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(fs.__all__) - {"__version__"} <= set(dir(fs)) and fs.fit.__module__.startswith("flowstudy.api.")
    with pytest.raises(AttributeError, match="no attribute 'optimise'"):
        fs.optimise


def test_no_api_name_is_shadowed_by_a_submodule():
    """Importing flowstudy.X sets the attribute fs.X to the module: no API name may be a submodule."""
    import importlib.util

    import flowstudy.study  # noqa: F401
    import flowstudy.train  # noqa: F401

    assert [n for n in fs.__all__ if importlib.util.find_spec(f"flowstudy.{n}") is not None] == []
    assert callable(fs.fit) and callable(fs.run_study)
