"""The eigen-coordinate step (flowstudy.train.eigen_step) against the data-coordinate step.

One run's three step spaces on the same draws (x0 and the rows rotated alike, the same t): the
whole-D eigen step has the data step's loss and gradients (the loss is rotation-invariant); the
leading step's loss times k / D plus the left-out coordinates' term is the whole loss, and its
gradients are the whole step's. Everything here computes in float32 (the subspace residual and the
base field cast to it): a loss is a mean of B·D = 512 squared terms of order one and a rotation
adds 16-term dot products, so the paths differ by ~1e-6 relative; rtol 1e-5 leaves a margin of ten.
"""

from __future__ import annotations

import pytest
import torch

from flowstudy.train import Trainer
from flowstudy.train.eigen_step import eigen_space, eigenbasis_refusal
from flowstudy.train.step import StepSpace


def _data_space(tmp_path, tiny_config, **overrides) -> tuple[Trainer, StepSpace]:
    cfg = tiny_config(**{**dict(base_field="gaussian", base_fit="train", residual_rank=4, aug=["noise:0.3"]), **overrides})
    trainer = Trainer(cfg, tmp_path, progress=False, eigenbasis=False)
    trainer.setup(None)
    return trainer, trainer.space


def test_eigen_steps_have_the_data_steps_loss_and_gradients(tmp_path, tiny_config):
    trainer, data = _data_space(tmp_path, tiny_config)
    whole = eigen_space(data, trainer.flow, trainer.augmentations, leading=False, seed=3)
    lead = eigen_space(data, trainer.flow, trainer.augmentations, leading=True, seed=3)
    k, dim, rotation = trainer.model.rank, trainer.dim, whole.rotation
    assert data.rotation is None and torch.equal(lead.rotation, rotation)
    torch.testing.assert_close(rotation.T @ rotation, torch.eye(dim), atol=1e-5, rtol=0)  # orthonormal: the invariance's premise
    assert (whole.loss_scale, whole.loss_offset, lead.loss_scale) == (1.0, 0.0, k / dim) and lead.loss_offset > 0
    assert lead.x1.shape == (trainer.train_x1.shape[0], k)

    rows = trainer.train_x1[:32]  # [B, D]
    x0 = torch.randn(32, dim, generator=torch.Generator().manual_seed(0))
    params = list(trainer.model.parameters())

    def loss_and_grads(space, x1, z0):
        loss = space.loss(trainer.flow, x1, z0, torch.Generator().manual_seed(1), "fp32")  # the same t draw
        return loss, torch.autograd.grad(loss, params)

    l_data, g_data = loss_and_grads(data, rows, x0)
    l_whole, g_whole = loss_and_grads(whole, rows @ rotation, x0 @ rotation)
    l_lead, g_lead = loss_and_grads(lead, (rows @ rotation)[:, :k], (x0 @ rotation)[:, :k])
    torch.testing.assert_close(l_whole, l_data, rtol=1e-5, atol=0)
    # the whole loss = (k / D) x the k coordinates' mean (l_lead is already scaled) + the D - k coordinates' term
    t = torch.rand(32, generator=torch.Generator().manual_seed(1))
    w0, w1 = x0 @ rotation, rows @ rotation
    x_t = (1 - t[:, None]) * w0 + t[:, None] * w1  # the straight path at the step's t
    rest = (whole.base(x_t, t)[:, k:] - (w1 - w0)[:, k:]).square().sum(1).mean() / dim
    torch.testing.assert_close(l_lead + rest, l_whole, rtol=1e-5, atol=0)
    for a, b, c in zip(g_data, g_whole, g_lead):
        scale = float(a.abs().max())
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * scale)
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5 * scale)
    assert any(float(g.abs().max()) > 0 for g in g_data)


@pytest.mark.parametrize(
    "overrides, reason",
    [(dict(aug=["noise:0.3", "dropout:0.1"]), "dropout"), (dict(residual_input="full"), "whole state")],
)
def test_runs_that_cannot_rotate_keep_their_data_space(tmp_path, tiny_config, overrides, reason):
    trainer, data = _data_space(tmp_path, tiny_config, **overrides)
    assert reason in eigenbasis_refusal(trainer.model, trainer.augmentations)
    assert eigen_space(data, trainer.flow, trainer.augmentations, seed=3) is data
