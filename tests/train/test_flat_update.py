"""The stacked group's fused clipping + AdamW + EMA kernel (flowstudy.train.flat_update): its
cases in Triton's interpreter (a child process, see flat_update_interp_cases.py), where it runs,
and on CUDA against the torch update."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowstudy.train import load_checkpoint
from flowstudy.train.flat_update import flat_update_available
from flowstudy.train.stacked import StackedGroup


def test_interpreter_cases():
    """The kernel against the float64 update, and a group stepping with it against separate runs,
    in Triton's interpreter (TRITON_INTERPRET=1 must be set before triton is imported)."""
    pytest.importorskip("triton")
    here = Path(__file__).parent
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(here.parents[1] / "src"), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", str(here / "flat_update_interp_cases.py")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=here.parents[1])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


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
