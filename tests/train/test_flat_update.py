"""The stacked group's fused clipping + AdamW + EMA kernel (flowstudy.train.flat_update): its
cases in Triton's interpreter (a child process, see flat_update_interp_cases.py), where it runs,
and on CUDA against the torch update."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowstudy.train import load_checkpoint
from flowstudy.train.flat_update import flat_update_available, torch_adamw_ema_
from flowstudy.train.stacked import StackedGroup


def test_interpreter_cases(interpreted):
    """The kernel against the float64 update, and a group stepping with it against separate runs,
    in Triton's interpreter (a child process: see flat_update_interp_cases.py)."""
    interpreted(Path(__file__).parent / "flat_update_interp_cases.py")


def test_torch_update_matches_the_float64_definition():
    """The torch update (the kernel's reference, and the path wherever Triton does not run), run in
    float64, against the update written from its definition: the same arithmetic in another order,
    so equal to float64 rounding. Three members, 300 columns, 100 decayed, EMA weights either side
    of 1/2 (torch.lerp's two forms), clipping factors below and at 1."""
    from flat_update_interp_cases import BETAS, EPS, reference

    gen = torch.Generator().manual_seed(0)
    K, P, decayed = 3, 300, 100
    p, e = (torch.randn(K, P, generator=gen, dtype=torch.float64) for _ in range(2))
    ref = [p, torch.zeros_like(p), torch.zeros_like(p), e]
    ours = [t.clone() for t in ref]
    for t in range(1, 4):
        g = torch.randn(K, P, generator=gen, dtype=torch.float64)
        lr = torch.tensor([1e-3, 5e-4, 2e-3], dtype=torch.float64)
        scalars = torch.stack([
            torch.tensor([1.0, 0.5, 0.05], dtype=torch.float64), 1 - lr * 0.5, lr / (1 - BETAS[0] ** t),
            torch.full((K,), (1 - BETAS[1] ** t) ** 0.5, dtype=torch.float64), torch.tensor([0.9, 0.5, 0.001], dtype=torch.float64),
        ], dim=1)
        ref = list(reference(ref[0], g, ref[1], ref[2], ref[3], scalars, decayed))
        torch_adamw_ema_(ours[0], g.clone(), ours[1], ours[2], ours[3], scalars, decayed, *BETAS, EPS)
        for name, a, b in zip(("weights", "exp_avg", "exp_avg_sq", "ema"), ours, ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15, msg=lambda text: f"step {t}, {name}: {text}")
    assert not torch.allclose(ours[0], p)  # it stepped


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cpu_groups_take_the_torch_update(tmp_path, tiny_config):
    assert not flat_update_available(torch.zeros(2, 3))
    group = StackedGroup([tiny_config(seed=0), tiny_config(seed=1)], [tmp_path / "a", tmp_path / "b"])
    group.prepare([False, False])
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
