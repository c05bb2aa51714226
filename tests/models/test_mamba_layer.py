"""The Mamba mixer: mamba_ssm's parameter layout and init, its maths, and the networks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from flowstudy.models import count_parameters, create_model
from flowstudy.models.mamba_velocity import MambaVelocityNetwork
from flowstudy.models.ssm import BiMambaLayer, MambaLayer, selective_scan_ref

# mamba_ssm.modules.mamba_simple.Mamba(d_model=256, d_state=16, d_conv=4, expand=2):
# d_inner = 512, dt_rank = ceil(256 / 16) = 16.
MAMBA_SSM_PARAMS_256 = {
    "A_log": (512, 16),
    "D": (512,),
    "in_proj.weight": (1024, 256),
    "conv1d.weight": (512, 1, 4),
    "conv1d.bias": (512,),
    "x_proj.weight": (48, 512),
    "dt_proj.weight": (512, 16),
    "dt_proj.bias": (512,),
    "out_proj.weight": (256, 512),
}
LAYER_256 = 437_760  # = sum of the products above


def test_parameter_names_and_shapes_match_mamba_ssm():
    layer = MambaLayer(256)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == MAMBA_SSM_PARAMS_256
    assert list(shapes) == list(MAMBA_SSM_PARAMS_256)  # same order as mamba_ssm's state_dict
    assert sum(math.prod(s) for s in MAMBA_SSM_PARAMS_256.values()) == LAYER_256
    assert count_parameters(layer) == LAYER_256


def test_initialisation_matches_mamba_ssm():
    torch.manual_seed(0)
    layer = MambaLayer(256)
    d_inner, rank = 512, 16
    expected_A_log = torch.log(torch.arange(1, 17, dtype=torch.float32)).repeat(d_inner, 1)
    assert layer.A_log.dtype == torch.float32 and layer.D.dtype == torch.float32
    torch.testing.assert_close(layer.A_log.data, expected_A_log, rtol=0, atol=0)
    torch.testing.assert_close(layer.D.data, torch.ones(d_inner), rtol=0, atol=0)
    assert layer.A_log._no_weight_decay and layer.D._no_weight_decay
    assert layer.dt_proj.bias._no_reinit
    assert layer.dt_proj.weight.abs().max() <= rank**-0.5
    assert layer.dt_proj.weight.std() > 0.5 * rank**-0.5 / math.sqrt(3)  # uniform, not constant
    dt = F.softplus(layer.dt_proj.bias.double())  # softplus^-1 of dt in [1e-3, 0.1]
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    # log-uniform: log dt is spread evenly over [log 1e-3, log 0.1]
    log_dt = torch.log(dt)
    mid = 0.5 * (math.log(1e-3) + math.log(0.1))
    assert abs(log_dt.mean().item() - mid) < 0.25
    assert log_dt.min() < math.log(2e-3) and log_dt.max() > math.log(0.05)
    assert layer.conv1d.groups == d_inner and layer.conv1d.padding == (3,)
    assert layer.in_proj.bias is None and layer.out_proj.bias is None and layer.x_proj.bias is None


def _reference_layer(layer: MambaLayer, h: torch.Tensor) -> torch.Tensor:
    """The layer's maths written out in float64 with an explicit causal convolution."""
    p = {k: v.detach().double() for k, v in layer.state_dict().items()}
    h = h.double()
    L = h.shape[1]
    xz = h @ p["in_proj.weight"].T  # [B, L, 2 d_inner]
    x, z = xz.chunk(2, dim=-1)
    w, k = p["conv1d.weight"][:, 0, :], layer.d_conv  # [d_inner, k]
    conv = torch.stack(
        [
            p["conv1d.bias"] + sum(w[:, j] * x[:, t - (k - 1) + j] for j in range(k) if t - (k - 1) + j >= 0)
            for t in range(L)
        ],
        dim=1,
    )  # [B, L, d_inner]: output t sees inputs t-k+1 .. t
    xc = conv * torch.sigmoid(conv)
    dt, B, C = torch.split(xc @ p["x_proj.weight"].T, [layer.dt_rank, layer.d_state, layer.d_state], -1)
    delta = dt @ p["dt_proj.weight"].T
    y = selective_scan_ref(
        xc.transpose(1, 2), delta.transpose(1, 2), -torch.exp(p["A_log"]), B.transpose(1, 2),
        C.transpose(1, 2), p["D"], z.transpose(1, 2), p["dt_proj.bias"], True,
    ).transpose(1, 2)
    return y @ p["out_proj.weight"].T


def test_layer_forward_matches_written_out_maths():
    torch.manual_seed(0)
    layer = MambaLayer(32, d_state=8, d_conv=3, expand=2)
    h = torch.randn(3, 7, 32)
    torch.testing.assert_close(layer(h).double(), _reference_layer(layer, h), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(layer.double()(h.double()), _reference_layer(layer, h), rtol=1e-10, atol=1e-12)


def test_layer_is_causal():
    torch.manual_seed(0)
    layer = MambaLayer(16, d_state=4)
    h = torch.randn(2, 10, 16)
    h2 = h.clone()
    h2[:, 6:] += torch.randn(2, 4, 16)
    out, out2 = layer(h), layer(h2)
    torch.testing.assert_close(out[:, :6], out2[:, :6], rtol=0, atol=0)
    assert not torch.allclose(out[:, 6:], out2[:, 6:])


def test_merged_layer_is_mirror_symmetric():
    """Swapping the forward and backward branch parameters and reversing the sequence
    reverses the output: the merged layer reads both directions in the same way."""
    torch.manual_seed(0)
    layer = BiMambaLayer(16, d_state=4)
    sd = layer.state_dict()
    swap = {"conv1d.weight": "conv1d_b.weight", "conv1d.bias": "conv1d_b.bias",
            "x_proj.weight": "x_proj_b.weight", "dt_proj.weight": "dt_proj_b.weight",
            "dt_proj.bias": "dt_proj_b.bias", "A_log": "A_b_log", "D": "D_b"}
    mirrored = dict(sd)
    for a, b in swap.items():
        mirrored[a], mirrored[b] = sd[b], sd[a]
    other = BiMambaLayer(16, d_state=4)
    other.load_state_dict(mirrored)
    h = torch.randn(2, 9, 16)
    torch.testing.assert_close(other(h.flip(1)), layer(h).flip(1), rtol=1e-5, atol=1e-6)


# Parameter count of the default network, part by part (D=1024, chunk 64, H=256, 4 layers).
H, CHUNK, LAYERS = 256, 64, 4
NORM = 2 * H
TIME_MLP = (256 * H + H) + (H * H + H)
TIME_PROJ = H * H + H
IN_OUT_PROJ = H * 2 * 2 * H + 2 * H * H  # in_proj + out_proj of one mixer: 393,216
POS = (1024 // CHUNK) * H  # one learned position vector per chunk token
SEPARATE = (
    2 * LAYERS * (LAYER_256 + NORM + TIME_PROJ)  # blocks with their norms and time projections
    + TIME_MLP + (CHUNK * H + H) + POS  # time MLP, input_proj, position embedding
    + 2 * NORM + (2 * H * CHUNK + CHUNK)  # final norms, output_proj
)
MERGED_MIXER = IN_OUT_PROJ + 2 * (LAYER_256 - IN_OUT_PROJ)


def test_default_network_parameter_counts():
    assert SEPARATE == 4_218_688
    assert count_parameters(MambaVelocityNetwork(pos_embed=False)) == SEPARATE - POS == 4_214_592
    assert count_parameters(MambaVelocityNetwork()) == SEPARATE
    assert count_parameters(create_model("mamba", skip=False)) == SEPARATE
    mixers = sum(
        count_parameters(m) for m in MambaVelocityNetwork().modules() if isinstance(m, MambaLayer)
    )
    assert mixers == 8 * LAYER_256 == 3_502_080


def test_tied_variant_removes_in_and_out_projections():
    tied = create_model("mamba-tied", skip=False)
    removed = SEPARATE - count_parameters(tied)
    assert removed == LAYERS * IN_OUT_PROJ == 1_572_864  # one in/out pair per tied block pair
    for f, b in zip(tied.fwd_layers, tied.bwd_layers):
        assert b.mixer.in_proj.weight is f.mixer.in_proj.weight
        assert b.mixer.out_proj.weight is f.mixer.out_proj.weight
        assert b.mixer.x_proj.weight is not f.mixer.x_proj.weight


def test_merged_variant_count():
    merged = create_model("mamba-merged", skip=False)
    expected = (
        LAYERS * (MERGED_MIXER + NORM + TIME_PROJ) + TIME_MLP + (CHUNK * H + H) + POS + NORM + (H * CHUNK + CHUNK)
    )
    assert count_parameters(merged) == expected


@pytest.mark.parametrize("mode", ["separate", "tied", "merged"])
def test_every_chunk_sees_both_directions(mode):
    """With both directions, the first output chunk depends on the last input chunk and
    the last output chunk on the first input chunk (a causal stack alone could not)."""
    torch.manual_seed(0)
    net = MambaVelocityNetwork(input_dim=64, chunk_size=8, hidden_dim=16, num_layers=1,
                               d_state=4, time_embed_dim=8, bidirectional=mode)
    torch.nn.init.normal_(net.output_proj.weight, std=0.1)
    x = torch.randn(2, 64)
    base = net(x, 0.5)
    x_last, x_first = x.clone(), x.clone()
    x_last[:, -8:] += 1.0
    x_first[:, :8] += 1.0
    assert not torch.allclose(net(x_last, 0.5)[:, :8], base[:, :8])
    assert not torch.allclose(net(x_first, 0.5)[:, -8:], base[:, -8:])


def test_position_embedding_is_added_to_every_token():
    """Chunk i's token gets pos_embed[i]: shifting one position vector by the negated input_proj
    bias of an all-zero input makes that token exactly zero before the first block."""
    torch.manual_seed(0)
    net = MambaVelocityNetwork(input_dim=64, chunk_size=8, hidden_dim=16, num_layers=1, d_state=4, time_embed_dim=8)
    assert net.pos_embed.shape == (1, 8, 16)
    seen = {}
    net.fwd_layers[0].register_forward_pre_hook(lambda m, args: seen.update(h=args[0].detach().clone()))
    with torch.no_grad():
        net.pos_embed[0, 3] = -net.input_proj.bias
        net(torch.zeros(1, 64), 0.5)
    assert torch.equal(seen["h"][0, 3], torch.zeros(16))
    assert (seen["h"][0, [0, 1, 2, 4, 5, 6, 7]].abs().sum(-1) > 0).all()
    assert MambaVelocityNetwork(input_dim=64, chunk_size=8, hidden_dim=16, num_layers=1, pos_embed=False).pos_embed is None


def test_deep_stack_trains():
    """Pre-norm residual blocks: a 6+6-layer network fits a fixed batch."""
    torch.manual_seed(0)
    net = MambaVelocityNetwork(input_dim=64, chunk_size=8, hidden_dim=32, num_layers=6,
                               d_state=4, time_embed_dim=16)
    x, t = torch.randn(32, 64), torch.rand(32)
    target = torch.tanh(x.roll(8, dims=1)) * t[:, None]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.mse_loss(net(x, t), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("with_bias", [True, False])
def test_causal_conv_and_its_written_out_backward_match_conv1d_in_float64(with_bias):
    """causal_conv_blc's backward is written by hand: its gradients against autograd's through
    torch's depthwise Conv1d (padding k - 1, first L outputs), alone and vmapped over members
    with their own weights."""
    from torch.func import vmap

    from flowstudy.models.ssm.branch import causal_conv_blc

    gen = torch.Generator().manual_seed(0)
    K, B, L, d, k = 3, 4, 7, 5, 4
    x = torch.randn(K, B, L, d, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(K, d, 1, k, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(K, d, dtype=torch.float64, generator=gen, requires_grad=True) if with_bias else None
    cot = torch.randn(K, B, L, d, dtype=torch.float64, generator=gen)

    def conv1d(xk, wk, bk):  # [B, L, d] through torch's depthwise convolution
        return F.conv1d(xk.transpose(1, 2), wk, bk, padding=k - 1, groups=d)[..., :L].transpose(1, 2)

    inputs = [t for t in (x, w, b) if t is not None]
    expected_out = torch.stack([conv1d(x[i], w[i], None if b is None else b[i]) for i in range(K)])
    expected = torch.autograd.grad((expected_out * cot).sum(), inputs)
    for out in (torch.stack([causal_conv_blc(x[i], w[i], None if b is None else b[i]) for i in range(K)]),
                vmap(causal_conv_blc, in_dims=(0, 0, 0 if b is not None else None))(x, w, b)):
        torch.testing.assert_close(out, expected_out, rtol=0, atol=1e-13)
        for got, want in zip(torch.autograd.grad((out * cot).sum(), inputs), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
