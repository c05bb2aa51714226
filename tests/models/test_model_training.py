"""Every family learns: a few Adam steps fit a fixed regression batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from flowstudy.models import create_model

FAMILIES = ["mlp", "dit", "unet", "mamba", "mamba-tied", "mamba-merged"]


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_preset_fits_a_batch(family):
    torch.manual_seed(0)
    overrides = {"input_dim": 128}
    if not family.startswith(("mlp", "unet")):
        overrides["chunk_size"] = 16
    model = create_model(f"{family}-tiny", **overrides)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(64, 128, generator=g), torch.rand(64, generator=g)
    target = torch.sin(x.roll(16, dims=1)) * (1 + t[:, None])  # depends on x, t and other chunks
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = last = None
    for _ in range(40):
        opt.zero_grad()
        loss = F.mse_loss(model(x, t), target)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    assert last < 0.5 * first, (first, last)
