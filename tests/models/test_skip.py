"""The time-gated skip gives a narrow network a full-rank linear path, and starts at zero."""

from __future__ import annotations

import torch

from flowstudy.models import TimeGatedSkip, count_parameters, create_model


def _fit_linear_field(model, dim, steps=300):
    """Regress model(x, t) onto the full-rank field v = -(1 + t) x; returns the final relative error."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x, t = torch.randn(128, dim, generator=g), torch.rand(128, generator=g)
        loss = ((model(x, t) + (1 + t)[:, None] * x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, t = torch.randn(512, dim, generator=g), torch.rand(512, generator=g)
    with torch.no_grad():
        target = -(1 + t)[:, None] * x
        return float(((model(x, t) - target) ** 2).mean() / (target**2).mean())


def test_skip_lifts_the_rank_limit_of_a_narrow_network():
    torch.manual_seed(0)
    bare = create_model("mlp", input_dim=64, hidden_dim=8, num_layers=3, skip=False)
    torch.manual_seed(0)
    skipped = create_model("mlp", input_dim=64, hidden_dim=8, num_layers=3)
    # Without the skip the output lies in an 8-dim subspace: at least (64 - 8) / 64 of the field is missed.
    assert _fit_linear_field(bare, 64) > 0.8
    assert _fit_linear_field(skipped, 64) < 0.05


def test_skip_is_zero_at_init_and_recorded_in_config():
    model = create_model("unet-tiny", input_dim=384)
    assert isinstance(model, TimeGatedSkip) and model.config["skip"] is True
    x = torch.randn(4, 384)
    assert torch.equal(model(x, 0.3), torch.zeros_like(x))
    rebuilt = create_model(model.arch, **model.config)
    assert isinstance(rebuilt, TimeGatedSkip)
    extra = count_parameters(model) - count_parameters(create_model("unet-tiny", input_dim=384, skip=False))
    assert extra == (128 * 256 + 256) + (256 * 384 + 384)
