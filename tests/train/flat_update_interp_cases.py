"""The fused clipping + AdamW + EMA kernel on CPU, in Triton's interpreter.

Not collected by default (no test_ prefix): ``test_flat_update.py::test_interpreter_cases`` runs
this file in a child pytest with TRITON_INTERPRET=1, which must be set before triton is imported.
"""

from __future__ import annotations

import os

import pytest
import torch
from test_stacked import _check_against_separate_runs, _members

from flowstudy.train.flat_update import flat_adamw_ema_, flat_update_available

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1 before triton is imported"
)
BETAS, EPS = (0.9, 0.999), 1e-8


def reference(p, g, m, v, e, scalars, decayed):
    """The update in float64, written from its definition (torch.optim.AdamW, clip_grad_norm_'s
    factor, torch.lerp's EMA)."""
    coef, decay, step, bias2, w = (scalars[:, i : i + 1] for i in range(5))
    g = g * coef
    p = p.clone()
    p[:, :decayed] *= decay
    m = m + (1 - BETAS[0]) * (g - m)
    v = BETAS[1] * v + (1 - BETAS[1]) * g * g
    p = p - step * m / (v.sqrt() / bias2 + EPS)
    return p, m, v, e + w * (p - e)


def test_kernel_matches_the_float64_update_over_steps():
    """Three members, 2,500 columns (a ragged last block), 900 of them decayed; EMA weights either
    side of 1/2 (torch.lerp's two forms); clipping factors below and at 1."""
    gen = torch.Generator().manual_seed(0)
    K, P, decayed = 3, 2500, 900
    state = [torch.randn(K, P, generator=gen, dtype=torch.float64) for _ in range(2)]  # p, e
    m, v = torch.zeros(K, P, dtype=torch.float64), torch.zeros(K, P, dtype=torch.float64)
    ref = [state[0], m, v, state[1]]
    ours = [t.float().contiguous() for t in ref]
    for t in range(1, 4):
        g = torch.randn(K, P, generator=gen, dtype=torch.float64) * torch.tensor([[0.1], [1.0], [10.0]], dtype=torch.float64)
        lr = torch.tensor([1e-3, 5e-4, 2e-3], dtype=torch.float64)
        scalars = torch.stack([
            torch.tensor([1.0, 0.5, 0.05], dtype=torch.float64), 1 - lr * 0.5, lr / (1 - BETAS[0] ** t),
            torch.full((K,), (1 - BETAS[1] ** t) ** 0.5, dtype=torch.float64), torch.tensor([0.9, 0.5, 0.001], dtype=torch.float64),
        ], dim=1)
        p, m, v, e = reference(ref[0], g, ref[1], ref[2], ref[3], scalars, decayed)
        ref = [p, m, v, e]
        flat_adamw_ema_(ours[0], g.float(), ours[1], ours[2], ours[3], scalars, decayed, *BETAS, EPS)
        for name, a, b in zip(("weights", "exp_avg", "exp_avg_sq", "ema"), ours, ref):  # element by element, to fp32 rounding
            atol = 1e-6 * float(b.abs().max())
            torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=atol, msg=lambda text: f"step {t}, {name}: {text}")


def test_group_with_the_fused_update_matches_separate_runs(tmp_path, tiny_config):
    """A stacked group stepping with the kernel trains what each run trains alone (torch AdamW)."""
    group = _check_against_separate_runs(tmp_path, _members(tiny_config))  # per-member draws: a run's own
    assert group.fused_update and flat_update_available(group.weights)


def test_bad_state_is_refused():
    p = torch.zeros(2, 8)
    with pytest.raises(ValueError, match=r"exp_avg must be a contiguous torch.float32 \[K, P\] = \[2, 8\]"):
        flat_adamw_ema_(p, p.clone(), torch.zeros(2, 4), p.clone(), p.clone(), torch.zeros(2, 5), 0, *BETAS, EPS)
