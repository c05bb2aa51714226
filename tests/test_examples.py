"""Each example in examples/ runs at its small size and produces what its page shows.

The documentation build runs the same scripts at full size (docs/hooks/examples.py).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def example(monkeypatch):
    """Import an example module by name, with examples/ on sys.path as when run as a script."""
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name: str):
        sys.modules.pop(name, None)
        return importlib.import_module(name)

    return load


def test_train_sample_evaluate(example, tmp_path):
    result = example("train_sample_evaluate").main(["--out", str(tmp_path), "--size", "small"])
    assert list(result.table.rows) == ["model", "gaussian", "noise", "copies", "heldout"]
    assert result.source == "<array 64x1024>" and result.reference in ("builtin:sonar-gsm8k-1k:test", "builtin:sonar-gsm8k-1k:val")
    assert (tmp_path / "samples.png").stat().st_size > 10_000 and (tmp_path / "run" / "checkpoints" / "best.pt").exists()


def test_own_embeddings(example, tmp_path):
    matches = example("own_embeddings").main(["--out", str(tmp_path), "--size", "small"])
    texts = [line for line in (tmp_path / "my_embeddings.jsonl").read_text().splitlines()]
    assert len(matches) == 32 and len(texts) == 800
    assert all(0 <= m.nearest_train_row < 800 and m.distance > 0 for m in matches)
    # the run recorded the user's file by its path (a spec every command accepts)
    import flowstudy as fs

    run = fs.load_run(tmp_path / "run", device="cpu")
    assert run.config["data"] == str(tmp_path / "my_embeddings.npy")
    assert np.array_equal(fs.load_dataset(run.config["data"]).embeddings, fs.load_dataset("builtin:sonar-gsm8k-1k").embeddings)
    assert (tmp_path / "nearest.png").exists()


def test_small_study(example, tmp_path):
    study = example("small_study").main(["--out", str(tmp_path), "--size", "small"])
    assert len(study.results) == study.n_cells == 2
    assert sorted(r["arch"] for r in study.results) == ["mlp-tiny", "unet-tiny"]
    report = (tmp_path / "report.md").read_text()
    assert "## Leaderboard against the Gaussian fit" in report and (tmp_path / "figures" / "metrics.png").exists()


def test_guided_optimisation(example, tmp_path):
    pytest.importorskip("botorch")
    paths = example("guided_optimisation").main(["--out", str(tmp_path), "--size", "small"])
    report = paths.markdown.read_text()
    assert "1 objective, 2 methods, prior Gaussian fit, 1 seed" in report
    # the ceilings are drawn from the builtin set: the best training row and the top-k bounds
    assert "The best training row scores" in report and "(k = 32)" in report
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["guided_s0", "prior_s0"]
