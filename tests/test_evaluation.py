"""Which held-out rows evaluation uses by default: the test split, never the one that chose the checkpoint."""

from __future__ import annotations

import numpy as np

from flowstudy.evaluation import default_reference_spec, default_test_spec


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
