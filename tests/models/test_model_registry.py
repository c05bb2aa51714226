"""create_model, the registry, and the shared time embedding."""

from __future__ import annotations

import math

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.models import REGISTRY, count_parameters, create_model, list_architectures
from flowstudy.models.dit import DiTVelocityNetwork
from flowstudy.models.mlp import SimpleMLP, timestep_embedding
from flowstudy.models.unet_mlp import UNetMLP


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown architecture 'transformer'.*dit.*mamba-merged.*unet"):
        create_model("transformer")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ConfigError, match="unknown option.*hidden.*valid options: input_dim, hidden_dim"):
        create_model("mlp", hidden=3)


@pytest.mark.parametrize(
    "arch,overrides,message",
    [
        ("dit", {"hidden_dim": 130, "num_heads": 4}, "hidden_dim must be divisible by num_heads"),
        ("dit", {"input_dim": 1000}, "chunk_size must divide input_dim"),
        ("mlp", {"num_layers": 1}, "num_layers must be >= 2"),
        ("unet", {"widths": []}, "widths must be a non-empty"),
        ("mamba-merged", {"chunk_size": 48}, "chunk_size must divide input_dim"),
    ],
)
def test_invalid_sizes_say_why(arch, overrides, message):
    with pytest.raises(ValueError, match=message):
        create_model(arch, **overrides)


def test_plain_name_is_the_small_preset():
    families = {name.rsplit("-", 1)[0] for name in list_architectures() if name.endswith("-small")}
    assert families == {"mlp", "dit", "unet", "mamba", "mamba-tied", "mamba-merged"}
    for family in families:
        assert REGISTRY[family] == REGISTRY[f"{family}-small"]
        assert create_model(family).config == create_model(f"{family}-small").config


def test_presets_grow():
    for family in ("mlp", "dit", "unet", "mamba", "mamba-tied", "mamba-merged"):
        counts = [count_parameters(create_model(f"{family}-{s}")) for s in ("tiny", "small", "base")]
        assert counts == sorted(counts) and len(set(counts)) == 3, family


def test_overrides_replace_preset_and_config_is_complete():
    model = create_model("dit-base", skip=False, depth=2, input_dim=384)
    assert isinstance(model, DiTVelocityNetwork) and model.arch == "dit-base"
    assert model.config["depth"] == 2 and model.config["input_dim"] == 384
    assert model.config["hidden_dim"] == 256  # from the preset
    assert model.config["time_embed_dim"] == 256  # constructor default, recorded too
    assert len(model.blocks) == 2


def test_reference_parameter_counts():
    """Counts derived by hand for D = 1024."""
    H, D, E = 256, 1024, 256
    mlp = (E * H + H + H * H + H) + ((D + H) * H + H) + 3 * (2 * H + H * H + H) + 2 * H + (H * D + D)
    assert count_parameters(SimpleMLP()) == mlp == 922_112
    assert count_parameters(create_model("mamba", skip=False)) == 4_218_688  # 4,214,592 + 16 x 256 positions
    assert count_parameters(create_model("mamba", skip=False, pos_embed=False)) == 4_214_592
    unet = UNetMLP(widths=(8,))
    # time MLP, down 1024->8, mid 8->8, up 16->8, FiLM per block, output
    expected = (E * E + E) * 2 + (D * 8 + 8) + (8 * 8 + 8) + (16 * 8 + 8) + 3 * (E * 16 + 16) + (8 * D + D)
    assert count_parameters(unet) == expected


def test_count_parameters_counts_shared_weights_once():
    tied = create_model("mamba-tied-tiny", skip=False)
    unique = {id(p): p.numel() for p in tied.parameters()}
    assert count_parameters(tied) == sum(unique.values())
    # the state_dict names the shared tensors twice, so it holds more numbers
    assert sum(v.numel() for v in tied.state_dict().values()) > count_parameters(tied)


def test_timestep_embedding_closed_form():
    t = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    emb = timestep_embedding(t, 8)
    assert emb.shape == (3, 8) and emb.dtype == torch.float64
    freqs = torch.tensor([10000 ** (-k / 4) for k in range(4)], dtype=torch.float64)
    args = 1000 * t[:, None] * freqs
    torch.testing.assert_close(emb, torch.cat([args.cos(), args.sin()], dim=1))
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4, dtype=torch.float64))
    odd = timestep_embedding(t.float(), 7)
    assert odd.shape == (3, 7) and odd.dtype == torch.float32
    assert torch.all(odd[:, -1] == 0)
    # nearby times are distinguishable: the fastest component turns ~160 times over [0, 1]
    assert 1000 / (2 * math.pi) > 150
    e = timestep_embedding(torch.tensor([0.500, 0.501]), 256)
    assert (e[0] - e[1]).norm() > 0.1
