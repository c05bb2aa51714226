"""Ablation options of the Mamba wrapper: the mixer (mamba / token-mlp / attention) and the
time conditioning (add / adaln). Each test checks what the option claims to change."""

from __future__ import annotations

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.models import count_parameters, create_model

D, CHUNK = 64, 16  # L = 4 chunk tokens


def _net(**kw):
    torch.manual_seed(0)
    model = create_model("mamba-tiny", input_dim=D, chunk_size=CHUNK, hidden_dim=32, backend="torch",
                         skip=False, **kw)
    with torch.no_grad():  # the zero-initialised head would hide every dependence
        model.output_proj.weight.normal_(0, 0.1)
        for p in model.parameters():
            if p.dim() >= 2 and torch.count_nonzero(p) == 0:
                p.normal_(0, 0.1)  # AdaLN-Zero layers, likewise
    return model.double()


def _chunk_jacobian(model) -> torch.Tensor:
    """|d out_chunk_i / d in_chunk_j| summed over the chunk entries: [L, L]."""
    x = torch.randn(1, D, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda z: model(z, 0.5), x)[0, :, 0, :]  # [D, D]
    L = D // CHUNK
    return jac.abs().reshape(L, CHUNK, L, CHUNK).sum(dim=(1, 3))


def test_token_mlp_mixes_nothing_between_chunks():
    block = _chunk_jacobian(_net(mixer="token-mlp"))
    off_diagonal = block - torch.diag(torch.diag(block))
    assert torch.all(torch.diag(block) > 1e-3)
    assert off_diagonal.abs().max() == 0.0


@pytest.mark.parametrize("mixer", ["mamba", "attention"])
def test_mixing_mixers_read_chunks_in_both_directions(mixer):
    block = _chunk_jacobian(_net(mixer=mixer))
    L = block.shape[0]
    upper = block[torch.triu_indices(L, L, 1).unbind()]  # output i depends on later chunk j > i
    lower = block[torch.tril_indices(L, L, -1).unbind()]
    assert upper.min() > 1e-6 and lower.min() > 1e-6


def test_adaln_blocks_start_as_the_identity_and_the_network_at_zero():
    torch.manual_seed(0)
    model = create_model("mamba-tiny", input_dim=D, chunk_size=CHUNK, hidden_dim=32, backend="torch",
                         skip=False, time_cond="adaln")
    h, c = torch.randn(3, D // CHUNK, 32), torch.randn(3, 32)
    for block in model.fwd_layers:
        torch.testing.assert_close(block(h, c), h, rtol=0, atol=0)
    assert model.fwd_time_proj is None
    assert torch.count_nonzero(model(torch.randn(5, D), torch.rand(5))) == 0


def test_adaln_output_depends_on_time_through_the_blocks():
    model = _net(time_cond="adaln")
    x = torch.randn(4, D, dtype=torch.float64)
    assert (model(x, 0.1) - model(x, 0.9)).abs().max() > 1e-4


def test_default_options_keep_the_state_dict_layout():
    keys = set(create_model("mamba-tiny", skip=False, backend="torch").state_dict())
    assert any(k.startswith("fwd_time_proj.0.") for k in keys)
    assert not any("adaLN" in k for k in keys)


@pytest.mark.parametrize("mixer", ["token-mlp", "attention"])
@pytest.mark.parametrize("time_cond", ["add", "adaln"])
def test_ablation_networks_train(mixer, time_cond):
    torch.manual_seed(0)
    model = create_model("mamba-tiny", input_dim=D, chunk_size=CHUNK, hidden_dim=32, backend="torch",
                         mixer=mixer, time_cond=time_cond)
    x, t, target = torch.randn(64, D), torch.rand(64), torch.randn(64, D)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = (model(x, t) - target).pow(2).mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first


def test_token_mlp_has_the_mamba_mixers_projection_widths():
    mamba = create_model("mamba", skip=False, backend="torch")
    mlp = create_model("mamba", skip=False, backend="torch", mixer="token-mlp")
    in_m, out_m = mamba.fwd_layers[0].mixer.in_proj, mamba.fwd_layers[0].mixer.out_proj
    in_t, out_t = mlp.fwd_layers[0].mixer.in_proj, mlp.fwd_layers[0].mixer.out_proj
    assert in_m.weight.shape == in_t.weight.shape and out_m.weight.shape == out_t.weight.shape
    assert count_parameters(mlp) < count_parameters(mamba)  # no conv, x_proj, dt_proj, A, D


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"mixer": "gru"}, "unknown mixer 'gru'; valid: mamba, token-mlp, attention"),
        ({"time_cond": "film"}, "unknown time_cond 'film'; valid: add, adaln"),
        ({"mixer": "attention", "bidirectional": "tied"}, "needs mixer='mamba'"),
    ],
)
def test_bad_ablation_options_are_named(kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        create_model("mamba-tiny", backend="torch", **kw)
