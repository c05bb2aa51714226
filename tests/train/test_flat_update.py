"""The stacked group's fused clipping + AdamW + EMA kernel (flowstudy.train.flat_update): its
cases in Triton's interpreter (a child process, see flat_update_interp_cases.py), where it runs,
and on CUDA against the torch update."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowstudy.train import load_checkpoint
from flowstudy.train.flat_update import flat_update_available
from flowstudy.train.stacked import StackedGroup


def test_interpreter_cases(interpreted):
    """The kernel against the float64 update, and a group stepping with it against separate runs,
    in Triton's interpreter (a child process: see flat_update_interp_cases.py)."""
    interpreted(Path(__file__).parent / "flat_update_interp_cases.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cpu_groups_take_the_torch_update(tmp_path, tiny_config):
    assert not flat_update_available(torch.zeros(2, 3))
    group = StackedGroup([tiny_config(seed=0), tiny_config(seed=1)], [tmp_path / "a", tmp_path / "b"])
    group._prepare([False, False])
    assert not group.fused_update and group.scratch is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_captured_group_with_the_fused_update_matches_the_torch_update_on_gpu(tmp_path, tiny_config, monkeypatch):
    import flowstudy.train.stacked as stacked

    configs = [tiny_config(seed=s, device="cuda", steps=30, weight_decay=0.05 * s, grad_clip=0.5) for s in range(3)]
    states = {}
    for fused in (True, False):
        monkeypatch.setattr(stacked, "FUSED_UPDATE", fused)
        group = StackedGroup(configs, [tmp_path / f"{fused}{k}" for k in range(3)])
        group.fit()
        assert group.fused_update == fused
        states[fused] = [load_checkpoint(tmp_path / f"{fused}{k}/checkpoints/last.pt") for k in range(3)]
    for a, b in zip(states[True], states[False]):
        for key in ("model", "ema"):
            x, y = (a[key], b[key]) if key == "model" else (a[key]["model"], b[key]["model"])
            for name in x:
                torch.testing.assert_close(x[name], y[name], rtol=1e-4, atol=1e-6, msg=name)
