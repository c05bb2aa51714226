"""A checkpoint that references code is refused with the reason, never with advice to lower the guard."""

import os

import pytest
import torch

from flowstudy.errors import CheckpointError
from flowstudy.checkpoint import load_checkpoint


class _RunsACommand:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_a_code_reference_is_refused_by_name_without_advice_to_unlock(tmp_path, capfd):
    path = tmp_path / "evil.pt"
    torch.save({"format": "flowstudy-checkpoint", "payload": _RunsACommand()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: refused: the file references {os.system.__module__}.system")
    assert "malicious" in message
    assert "weights_only" not in message and "False" not in message
    assert caught.value.__cause__ is None  # torch's own text (with its advice) is not chained in
    assert "this must never run" not in capfd.readouterr().out


def test_a_pickle_that_is_no_torch_checkpoint_is_refused_without_advice(tmp_path):
    path = tmp_path / "plain.pt"
    path.write_bytes(__import__("pickle").dumps({"a": 1}, protocol=4))
    with pytest.raises(CheckpointError, match=r"plain\.pt: refused: not a plain torch checkpoint") as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value)
