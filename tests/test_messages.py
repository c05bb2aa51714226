"""Small messages that must say what to do: devices, token sizes, sample files, summaries, sanity."""

from __future__ import annotations

import numpy as np
import pytest

import flowstudy as fs
from flowstudy.cli import main
from flowstudy.data import EmbeddingSet
from flowstudy.errors import ConfigError
from flowstudy.models import create_model


def test_an_unknown_device_names_the_valid_ones(tiny_data, tmp_path, capsys):
    from flowstudy.train import resolve_device

    with pytest.raises(ConfigError, match="unknown device 'cdua'; valid: auto, cpu, cuda, cuda:N"):
        resolve_device("cdua")
    assert main(["train", "--data", f"{tiny_data}:train", "--out", str(tmp_path / "r"), "--device", "cdua"]) == 2
    assert "error: unknown device 'cdua'; valid: auto, cpu, cuda" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["dit", "mamba"])
def test_a_chunk_size_that_does_not_divide_d_names_sizes_that_do(arch):
    with pytest.raises(ConfigError) as err:
        create_model(arch, input_dim=50)
    assert "at D = 50 use chunk_size 1, 2, 5, 10, 25 or 50 (e.g. --model-opt chunk_size=" in str(err.value)
    suggested = int(str(err.value).rsplit("chunk_size=", 1)[1].rstrip(")"))
    with pytest.raises(ConfigError, match=f"e.g. --model-opt chunk_size=10\\)"):
        create_model(arch, input_dim=50, chunk_size=12)  # the nearest divisor
    x = create_model(arch, input_dim=50, chunk_size=suggested)(np_rows(3, 50), 0.5)
    assert x.shape == (3, 50)


def np_rows(n: int, d: int):
    import torch

    return torch.from_numpy(np.random.default_rng(0).normal(size=(n, d)).astype(np.float32))


def test_sample_writes_csv_or_refuses(tiny_data, tmp_path, capsys):
    run = fs.fit(f"{tiny_data}:train", out=tmp_path / "run", arch="mlp-tiny", steps=10, batch_size=64, val_every=10,
                 device="cpu", recipe="none", progress=False)
    assert main(["sample", str(run.path), "--out", str(tmp_path / "x.csv"), "--n", "5", "--device", "cpu"]) == 0
    assert main(["sample", str(run.path), "--out", str(tmp_path / "x.npy"), "--n", "5", "--device", "cpu"]) == 0
    # float32 printed with 9 significant digits reads back exactly
    assert np.array_equal(np.loadtxt(tmp_path / "x.csv", delimiter=",", dtype=np.float32), np.load(tmp_path / "x.npy"))
    capsys.readouterr()
    assert main(["sample", str(run.path), "--out", str(tmp_path / "x.txt"), "--n", "5"]) == 2
    assert f"--out must name a .npy or .csv file; got {tmp_path / 'x.txt'}" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()


def test_printing_an_embedding_set_shows_a_summary():
    texts = [f"prompt number {i}" for i in range(1000)]
    shown = repr(EmbeddingSet(np.zeros((1000, 8), dtype=np.float32), texts, "data.npy"))
    assert shown == "EmbeddingSet('data.npy': 1000 rows x 8 dims, texts, e.g. 'prompt number 0')"
    assert repr(EmbeddingSet(np.zeros((2, 3), dtype=np.float32), None, "x")) == "EmbeddingSet('x': 2 rows x 3 dims, no texts)"


def test_the_sanity_check_says_why_a_margin_is_undefined():
    from flowstudy.metrics.sanity import check_metric

    rows = {"heldout": [1.0, 1.01, 0.99, 1.0], "gaussian": [1.2, np.nan, 1.21, 1.19], "noise": [1.5, 1.52, 1.49, 1.5]}
    check = check_metric({name: {"fidelity": np.array(v)} for name, v in rows.items()}, "fidelity")
    assert not check.passes and "nan" not in check.reason
    assert "real held-out rows and the Gaussian fit cannot be ordered: fidelity is undefined (NaN or infinite) on 1 of 4 splits" in check.reason
    assert "the Gaussian fit and noise cannot be ordered" in check.reason
