"""FlowMethod composition, loss definition and the create_flow registry."""

from __future__ import annotations

import math

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.flows import (
    ExactOT,
    FlowMethod,
    Independent,
    LinearInterpolant,
    LogitNormalTime,
    Paired,
    SinkhornOT,
    Straight,
    TrigInterpolant,
    UniformTime,
    create_flow,
    list_flows,
)

B, D = 32, 6


def _data(seed: int = 0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g, dtype=dtype), 3.0 + torch.randn(B, D, generator=g, dtype=dtype)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list_flows())
def test_sample_path_is_consistent_with_its_parts(name):
    """x_t, u_t are the path's closed form at the returned (x0, x1, t); x1 rows are the data's."""
    flow = create_flow(name)
    x0, x1 = _data()
    s = flow.sample_path(x1, x0 if name == "reflow" else None, generator=_gen())
    assert s.t.shape == (B,) and s.x_t.shape == s.u_t.shape == s.x0.shape == s.x1.shape == (B, D)
    assert ((s.t >= 0) & (s.t <= 1)).all()
    assert sorted(map(tuple, s.x1.tolist())) == sorted(map(tuple, x1.tolist()))  # a permutation of x1
    if not flow.path.needs_noise:
        x_t, u_t = flow.path.interpolate(s.x0, s.x1, s.t)
        torch.testing.assert_close(s.x_t, x_t, rtol=0, atol=0)
        torch.testing.assert_close(s.u_t, u_t, rtol=0, atol=0)


@pytest.mark.parametrize("name", list_flows())
def test_deterministic_under_a_seed(name):
    flow = create_flow(name)
    x0, x1 = _data()
    x0 = x0 if name == "reflow" else None
    first, second = (flow.sample_path(x1, x0, generator=_gen(5)) for _ in range(2))
    for field in ("t", "x_t", "u_t", "x0", "x1"):
        assert torch.equal(getattr(first, field), getattr(second, field))


@pytest.mark.parametrize("path", [Straight(), LinearInterpolant(), TrigInterpolant()], ids=repr)
def test_loss_is_zero_for_the_oracle_of_a_deterministic_path(path):
    """With independent coupling rows keep their order, so u_t is a known function of (row, t)."""
    x0, x1 = _data()
    flow = FlowMethod(path=path, coupling=Independent(), time_sampler=UniformTime())

    def oracle(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return path.interpolate(x0, x1, t)[1]

    assert flow.loss(oracle, x1, x0, generator=_gen()).item() == 0.0
    assert flow.loss(lambda x, t: torch.zeros_like(x), x1, x0, generator=_gen()).item() > 1.0


def test_loss_of_a_stochastic_path_has_an_irreducible_part():
    """With gamma > 0, a model knowing (x0, x1) but not z misses exactly gamma'(t)·z = g(1 - 2t)·z."""
    x0, x1 = _data()
    path = LinearInterpolant(gamma=0.5)
    flow = FlowMethod(path=path)

    def knows_pairs_not_noise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x1 - x0

    loss = flow.loss(knows_pairs_not_noise, x1, x0, generator=_gen(1)).item()
    g = _gen(1)  # documented draw order with x0 given: t, then z
    t = torch.rand(B, generator=g, dtype=torch.float64)
    z = torch.randn(B, D, generator=g, dtype=torch.float64)
    missed = 0.5 * (1 - 2 * t)[:, None] * z  # [B, D]
    assert loss == pytest.approx(path.loss_weight * missed.square().mean().item(), rel=1e-12)


def test_loss_is_weighted_mse_of_the_path_sample():
    x0, x1 = _data()
    flow = create_flow("si-trig")
    model = torch.nn.Linear(D, D).double()

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x) * t[:, None]

    s = flow.sample_path(x1, generator=_gen(2))
    expected = flow.loss_weight * ((velocity(s.x_t, s.t) - s.u_t) ** 2).sum(dim=1).div(D).mean()
    loss = flow.loss(velocity, x1, generator=_gen(2))
    assert loss.shape == () and loss.item() == pytest.approx(expected.item(), rel=1e-12)
    loss.backward()
    assert model.weight.grad is not None


def test_loss_compares_in_float32_for_bf16_models():
    _, x1 = _data(dtype=torch.float32)
    flow = create_flow("icfm")
    loss = flow.loss(lambda x, t: torch.zeros_like(x, dtype=torch.bfloat16), x1, generator=_gen())
    assert loss.dtype == torch.float32


def test_weighted_losses_of_a_zero_model_agree_across_paths():
    """loss_weight puts E|u|^2 on one scale: a zero model scores ~2 on every path (standard x0, x1)."""
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(50_000, 4, generator=g, dtype=torch.float64)
    for name in ("icfm", "si-linear", "si-trig"):
        loss = create_flow(name).loss(lambda x, t: torch.zeros_like(x), x1, generator=g).item()
        assert loss == pytest.approx(2.0, rel=0.03), name


def test_registry_recipes():
    expected = {
        "icfm": (Straight, Independent),
        "otcfm": (Straight, ExactOT),
        "otcfm-sinkhorn": (Straight, SinkhornOT),
        "si-linear": (LinearInterpolant, Independent),
        "si-trig": (TrigInterpolant, Independent),
        "reflow": (Straight, Paired),
    }
    assert list_flows() == list(expected)
    for name, (path_cls, coupling_cls) in expected.items():
        flow = create_flow(name)
        assert type(flow.path) is path_cls and type(flow.coupling) is coupling_cls
        assert isinstance(flow.time_sampler, UniformTime) and flow.name == name
    assert create_flow("si-linear").path.gamma > 0 and create_flow("si-trig").path.gamma > 0


def test_overrides_route_to_their_part():
    flow = create_flow("icfm", sigma=0.1, time_sampler="logit_normal", mean=0.5, std=0.8)
    assert flow.path == Straight(sigma=0.1)
    assert flow.time_sampler == LogitNormalTime(mean=0.5, std=0.8)
    assert create_flow("si-trig", gamma=0.0).path == TrigInterpolant(gamma=0.0)
    assert create_flow("otcfm-sinkhorn", reg=0.1).coupling == SinkhornOT(reg=0.1)
    assert create_flow("si-linear", path="straight").path == Straight()  # recipe's gamma dropped
    assert create_flow("icfm", coupling=ExactOT()).coupling == ExactOT()


def test_unknown_names_and_options():
    with pytest.raises(ConfigError, match="valid: icfm, otcfm, otcfm-sinkhorn, si-linear, si-trig, reflow"):
        create_flow("ddpm")
    with pytest.raises(ConfigError, match="no option 'gamma'; valid options: sigma"):
        create_flow("icfm", gamma=0.1)
    with pytest.raises(ConfigError, match="unknown time_sampler 'beta'; valid: uniform, logit_normal"):
        create_flow("icfm", time_sampler="beta")


def test_reflow_needs_x0_and_keeps_pairs():
    x0, x1 = _data()
    flow = create_flow("reflow")
    with pytest.raises(ConfigError, match="pass x0"):
        flow.sample_path(x1)
    s = flow.sample_path(x1, x0, generator=_gen())
    assert torch.equal(s.x0, x0) and torch.equal(s.x1, x1)


def test_input_checks():
    x0, x1 = _data()
    flow = create_flow("icfm")
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        flow.sample_path(x1[0])
    with pytest.raises(ValueError, match="x0 must have x1's shape"):
        flow.sample_path(x1, x0[:3])
    assert math.isclose(flow.loss_weight, 1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list_flows())
def test_sample_path_on_cuda_with_a_cuda_generator(name):
    device = torch.device("cuda")
    x0, x1 = (x.float().to(device) for x in _data())
    x0 = x0 if name == "reflow" else None
    flow = create_flow(name)
    first, second = (flow.sample_path(x1, x0, generator=torch.Generator(device).manual_seed(0)) for _ in range(2))
    assert first.x_t.device.type == "cuda" and torch.equal(first.x_t, second.x_t)
    assert sorted(map(tuple, first.x1.tolist())) == sorted(map(tuple, x1.tolist()))
    with pytest.raises(ValueError, match="generator lives on"):
        flow.sample_path(x1, x0, generator=torch.Generator())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["otcfm", "otcfm-sinkhorn", "si-trig"])
def test_loss_under_bf16_autocast_on_cuda(name):
    """As the trainer calls it: the model runs in bf16, couplings and the loss stay fp32."""
    x1 = torch.randn(256, 32, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    model = torch.nn.Linear(32, 32).cuda()
    flow = create_flow(name)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = flow.loss(lambda x, t: model(x), x1, generator=torch.Generator("cuda").manual_seed(1))
    reference = flow.loss(lambda x, t: model(x), x1, generator=torch.Generator("cuda").manual_seed(1))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=2e-2)
    loss.backward()
    assert torch.isfinite(model.weight.grad).all()
