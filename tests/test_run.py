"""One trained-run object: what fs.fit returns is what load_run rebuilds, what the study, the
evaluation and the optimiser read; its parts, its one loader's arguments and errors; evaluation
in memory with the held-out NLL from Python."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch

import flowstudy as fs
from flowstudy.errors import CheckpointError, ConfigError
from flowstudy.flows.gaussian_base import GaussianBaseField
from flowstudy.flows.subspace import SubspaceNet
from flowstudy.run import Run, load_run
from flowstudy.sampling import sample

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = dict(arch="mlp-tiny", steps=30, batch_size=32, val_every=15, device="cpu", progress=False)


@pytest.fixture(scope="module")
def fitted(tiny_data, tmp_path_factory):
    """A subspace-residual run (the MLP recipe: Gaussian base field, rank 128 > D = 16)."""
    return fs.fit(f"{tiny_data}:train", out=tmp_path_factory.mktemp("run") / "run", recipe="sonar", **FAST)


def test_fit_returns_the_run_that_load_run_rebuilds(fitted):
    loaded = load_run(fitted.path, device="cpu")
    assert type(fitted) is type(loaded) is Run is fs.Run and fitted.result is not None and loaded.result is None
    assert loaded.which == "best" and loaded.checkpoint["step"] == fitted.checkpoint["step"]
    x, t = torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), torch.full((8,), 0.4)
    torch.testing.assert_close(loaded.velocity(x, t), fitted.velocity(x, t), rtol=0, atol=0)
    # the samples are the sampling module's, from the same object, in the original space
    assert np.array_equal(loaded.sample(12, seed=3, steps=4), sample(loaded, 12, seed=3, steps=4))


def test_a_run_names_its_parts(fitted):
    run = load_run(fitted.path, "last", device="cpu")
    assert run.which == "last" and run.dim == 16 and run.device == torch.device("cpu")
    assert isinstance(run.base_field, GaussianBaseField) and isinstance(run.network, SubspaceNet)
    assert run.config["residual_rank"] == 128 and run.residual_rank == 16  # a rank of D or more is the whole space
    assert run.config == run.checkpoint["config"] and run.standardizer.dim == 16
    raw = load_run(fitted.path, "last", device="cpu", ema=False)
    assert any(not torch.equal(a, b) for a, b in zip(run.network.parameters(), raw.network.parameters()))


def test_load_run_errors_name_what_is_wrong(fitted, tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        load_run(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="checkpoint must be one of best, last; got 'first'"):
        load_run(fitted.path, "first")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_run(tmp_path / "empty")
    with pytest.raises(ConfigError, match="n must be >= 1"):
        fitted.draw(0)


def test_evaluate_a_run_with_nll_in_memory(fitted, tiny_data, monkeypatch):
    def no_temporary_files(*args, **kwargs):
        raise AssertionError("evaluation wrote a temporary file")

    monkeypatch.setattr(tempfile, "TemporaryDirectory", no_temporary_files)
    monkeypatch.setattr(tempfile, "mkdtemp", no_temporary_files)
    result = fs.evaluate(fitted, n=48, steps=4, nll=fs.NLLOptions(rows=8, steps=2))
    assert result.nll is not None and result.nll.model.n_rows == 8 and result.reference == str(tiny_data / "val.npy")
    assert result.nll.estimator == "exact"  # a subspace residual knows its divergence: k VJPs
    train = np.load(tiny_data / "train.npy")
    plain = fs.evaluate(fitted.sample(48, steps=4), train=train, reference=np.load(tiny_data / "val.npy"))
    assert plain.nll is None and plain.source == "<array 48x16>"
    with pytest.raises(ConfigError, match="the held-out NLL \\(nll\\) needs a run"):
        fs.evaluate(fitted.sample(8, steps=2), train=train, reference=train, nll=True)
    with pytest.raises(ConfigError, match="needs the training rows \\(train\\)"):
        fs.evaluate(fitted.sample(8, steps=2))
