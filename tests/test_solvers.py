"""ODE solvers on analytic fields: orders of accuracy, NFE, inversion, precision."""

from __future__ import annotations

import math

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.solvers import SolveResult, list_solvers, solve

FIXED = {"euler": (1, 1), "midpoint": (2, 2), "heun": (2, 2), "rk4": (4, 4)}  # name -> (order, NFE per step)
F64 = torch.float64


def _ones(b: int = 3, d: int = 2, dtype=F64) -> torch.Tensor:
    return torch.ones(b, d, dtype=dtype)


def _cubic_error(method: str, steps: int) -> float:
    """dx/dt = 3t^2 from 0 to 1: x(1) = x(0) + 1."""
    result = solve(lambda x, t: (3 * t**2)[:, None].expand_as(x), _ones(), method=method, steps=steps)
    return (result.x - 2.0).abs().max().item()


def _growth_error(method: str, steps: int, a: float = 1.5) -> float:
    """dx/dt = a·x from 0 to 1: x(1) = e^a·x(0)."""
    result = solve(lambda x, t: a * x, _ones(), method=method, steps=steps)
    return (result.x - math.exp(a)).abs().max().item()


def _gaussian_bump_error(method: str, steps: int) -> float:
    """dx/dt = 2t·x (state and time): x(1) = e·x(0)."""
    result = solve(lambda x, t: 2 * t[:, None] * x, _ones(), method=method, steps=steps)
    return (result.x - math.e).abs().max().item()


def _observed_order(error, method: str, n: int) -> float:
    return math.log2(error(method, n) / error(method, 2 * n))


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun"])
def test_order_on_time_only_field(method):
    n = 64 if method == "euler" else 16
    assert _observed_order(_cubic_error, method, n) == pytest.approx(FIXED[method][0], abs=0.05)


def test_rk4_integrates_a_quadratic_in_t_exactly():
    """RK4 on dx/dt = f(t) is Simpson's rule, exact for polynomials of degree <= 3."""
    assert _cubic_error("rk4", 3) < 1e-14


@pytest.mark.parametrize("method", list(FIXED))
@pytest.mark.parametrize("error", [_growth_error, _gaussian_bump_error], ids=["a*x", "2t*x"])
def test_order_on_linear_fields(method, error):
    n = {"euler": 128, "midpoint": 32, "heun": 32, "rk4": 16}[method]
    assert _observed_order(error, method, n) == pytest.approx(FIXED[method][0], abs=0.1)


@pytest.mark.parametrize("method", list(FIXED))
def test_nfe_counts_network_calls(method):
    calls = []

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t)
        assert t.shape == (x.shape[0],)
        return -x

    result = solve(field, _ones(), method=method, steps=7)
    assert result.nfe == len(calls) == 7 * FIXED[method][1]
    assert result.steps == 7


@pytest.mark.parametrize("method", list(FIXED))
def test_forward_then_inverse_returns_to_the_start(method):
    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(3 * x) + t[:, None] * torch.cos(x) - 0.5 * x

    start = torch.randn(8, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    there = solve(field, start, 0.0, 1.0, method=method, steps=200).x
    back = solve(field, there, 1.0, 0.0, method=method, steps=200).x
    tolerance = {"euler": 1e-1, "midpoint": 1e-4, "heun": 1e-4, "rk4": 1e-9}[method]
    assert (back - start).abs().max().item() < tolerance


def test_inverse_integration_of_the_exponential():
    result = solve(lambda x, t: 1.5 * x, _ones() * math.exp(1.5), 1.0, 0.0, method="rk4", steps=64)
    torch.testing.assert_close(result.x, _ones(), rtol=1e-8, atol=1e-8)  # RK4 error ~ (1.5/64)^4


def test_trajectory_and_times():
    x_init = _ones(4, 3)
    result = solve(lambda x, t: -x, x_init, method="heun", steps=5, return_trajectory=True)
    assert isinstance(result, SolveResult)
    assert result.trajectory.shape == (6, 4, 3) and result.times.shape == (6,)
    torch.testing.assert_close(result.times, torch.linspace(0, 1, 6, dtype=F64))
    assert torch.equal(result.trajectory[0], x_init) and torch.equal(result.trajectory[-1], result.x)
    plain = solve(lambda x, t: -x, x_init, method="heun", steps=5)
    assert plain.trajectory is None and plain.times is None and torch.equal(plain.x, result.x)
    backward = solve(lambda x, t: -x, x_init, 1.0, 0.0, method="euler", steps=4, return_trajectory=True)
    torch.testing.assert_close(backward.times, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=F64))


def test_fp32_state_whatever_the_network_returns():
    seen = []

    def bf16_net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((x.dtype, t.dtype))
        return (0.5 * x).to(torch.bfloat16)

    for x_init in (_ones(dtype=torch.float32), _ones(dtype=torch.bfloat16)):
        result = solve(bf16_net, x_init, method="rk4", steps=10, return_trajectory=True)
        assert result.x.dtype == result.trajectory.dtype == torch.float32
    assert set(seen) == {(torch.float32, torch.float32)}
    assert solve(lambda x, t: x.half(), _ones(), steps=2).x.dtype == F64  # float64 stays float64


def test_deterministic_and_differentiable():
    start = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.7 * x

    first = solve(field, start, method="midpoint", steps=9)
    second = solve(field, start, method="midpoint", steps=9)
    assert torch.equal(first.x, second.x)
    first.x.sum().backward()  # no no_grad inside: dx(1)/dx(0) = (1 + h·0.7 + (h·0.7)^2/2)^9
    h = 0.7 / 9
    torch.testing.assert_close(start.grad, torch.full_like(start, (1 + h + h * h / 2) ** 9))


def test_dopri5_accuracy_nfe_and_trajectory():
    pytest.importorskip("torchdiffeq")
    calls = []

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return 2 * t[:, None] * x  # x(t) = exp(t^2)·x(0)

    result = solve(field, _ones(), method="dopri5", steps=4, return_trajectory=True, rtol=1e-8, atol=1e-8)
    assert result.nfe == len(calls) > 0
    exact = torch.exp(torch.linspace(0, 1, 5, dtype=F64) ** 2)  # [5]
    torch.testing.assert_close(result.trajectory[:, 0, 0], exact, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(result.times, torch.linspace(0, 1, 5, dtype=F64))
    loose = solve(field, _ones(), method="dopri5", rtol=1e-3, atol=1e-3)
    assert loose.nfe < result.nfe and abs(loose.x[0, 0].item() - math.e) < 1e-2
    back = solve(field, result.x, 1.0, 0.0, method="dopri5", rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(back.x, _ones(), rtol=1e-6, atol=1e-6)


def test_dopri5_fp32_with_bf16_field():
    pytest.importorskip("torchdiffeq")
    result = solve(lambda x, t: x.to(torch.bfloat16), _ones(dtype=torch.float32), method="dopri5")
    assert result.x.dtype == torch.float32


def test_input_validation():
    assert list_solvers() == ["euler", "midpoint", "heun", "rk4", "dopri5"]
    with pytest.raises(ConfigError, match="unknown ODE solver 'rk45'; valid: euler, midpoint, heun, rk4, dopri5"):
        solve(lambda x, t: x, _ones(), method="rk45")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="steps must be an integer >= 1"):
            solve(lambda x, t: x, _ones(), steps=bad)
    with pytest.raises(ValueError, match=r"x_init must be a 2-D tensor \[B, D\]; got \(3,\)"):
        solve(lambda x, t: x, torch.ones(3))
    with pytest.raises(ValueError, match="velocity_fn must return the state's shape"):
        solve(lambda x, t: x[:, :1], _ones())
    with pytest.raises(ConfigError, match="must differ"):
        solve(lambda x, t: x, _ones(), 0.5, 0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", list_solvers())
def test_bf16_autocast_network_on_cuda(method):
    if method == "dopri5":
        pytest.importorskip("torchdiffeq")
    net = torch.nn.Linear(16, 16).cuda()
    torch.nn.init.normal_(net.weight, std=0.1)

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return net(x) * t[:, None]

    x_init = torch.randn(64, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    with torch.no_grad():
        result = solve(field, x_init, method=method, steps=8)
        reference = solve(lambda x, t: net(x) * t[:, None], x_init, method=method, steps=8)
    assert result.x.dtype == torch.float32 and result.x.device.type == "cuda"
    torch.testing.assert_close(result.x, reference.x, rtol=2e-2, atol=2e-2)  # bf16 network, fp32 state
