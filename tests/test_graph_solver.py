"""The graph-replayed fixed-step solver returns what the reference solver returns."""

from __future__ import annotations

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.graph_solver import FIXED_STEP_METHODS, GraphSolver
from flowstudy.models import create_model
from flowstudy.solvers import solve


def _network(device="cpu"):
    torch.manual_seed(0)
    return create_model("mlp-tiny", input_dim=16).to(device).eval()


@pytest.mark.parametrize("method", FIXED_STEP_METHODS)
def test_equals_reference_solver_on_cpu(method):
    net = _network()
    solver = GraphSolver(net, 8, 16, device="cpu", method=method, steps=7)
    for seed in (1, 2):  # fresh inputs each call: the solver holds no state between calls
        x0 = torch.randn(8, 16, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            reference = solve(net, x0, 0.0, 1.0, method=method, steps=7)
        assert torch.equal(solver(x0), reference.x)
        assert solver.nfe == reference.nfe


@pytest.mark.slow  # inductor compiles the network's C++ kernels: ~40 s on 2 CPU cores
def test_compiled_velocity_equals_the_eager_solve_on_cpu():
    net = _network()
    solver = GraphSolver(net, 8, 16, device="cpu", method="midpoint", steps=5, compile="default")
    x0 = torch.randn(8, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = solve(net, x0, 0.0, 1.0, method="midpoint", steps=5)
    torch.testing.assert_close(solver(x0), reference.x, rtol=1e-5, atol=1e-6)  # fusion may reorder float sums
    assert solver.nfe == reference.nfe == 10


def test_closed_form_field_and_inverse_direction():
    # dx/dt = -x from t = 1 to t = 0 with rk4: x(0) = x(1)·e, to rk4's accuracy at 20 steps.
    solver = GraphSolver(lambda x, t: -x, 4, 3, device="cpu", method="rk4", steps=20, t_start=1.0, t_end=0.0)
    x1 = torch.randn(4, 3, dtype=torch.float32)
    torch.testing.assert_close(solver(x1), x1 * torch.e, rtol=1e-6, atol=1e-6)


def test_bad_input_is_named():
    with pytest.raises(ConfigError, match="fixed-step"):
        GraphSolver(lambda x, t: x, 4, 3, device="cpu", method="dopri5")
    with pytest.raises(ConfigError, match="CUDA"):
        GraphSolver(lambda x, t: x, 4, 3, device="cpu", capture=True)
    with pytest.raises(ConfigError, match="compile must be one of default, max-autotune-no-cudagraphs"):
        GraphSolver(lambda x, t: x, 4, 3, device="cpu", compile="reduce-overhead")
    with pytest.raises(ValueError, match=r"\[4, 3\]"):
        GraphSolver(lambda x, t: x, 4, 3, device="cpu")(torch.zeros(5, 3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_graph_replays_equal_eager_solves_on_gpu():
    net = _network("cuda")
    solver = GraphSolver(net, 32, 16, device="cuda", method="euler", steps=10, compile="default")
    assert solver.graph is not None
    x0 = torch.randn(32, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    with torch.no_grad():
        reference = solve(net, x0, 0.0, 1.0, method="euler", steps=10).x
    torch.testing.assert_close(solver(x0), reference, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["mlp-tiny", "mamba-tiny"])
def test_graph_replays_equal_eager_solves_on_gpu(arch):
    torch.manual_seed(0)
    net = create_model(arch, input_dim=64).cuda().eval()
    solver = GraphSolver(net, 32, 64, device="cuda", method="heun", steps=10)
    assert solver.graph is not None
    for seed in (1, 2, 3):
        x0 = torch.randn(32, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(seed))
        with torch.no_grad():
            reference = solve(net, x0, 0.0, 1.0, method="heun", steps=10).x
        torch.testing.assert_close(solver(x0), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_capturing_a_solver_leaves_the_default_cuda_generator_alone():
    """While any thread records a graph, torch's default CUDA generator is in capture mode and a draw
    from it in another thread fails ("Offset increment outside graph capture"): a study's threads
    sample while others capture, so building a solver must not draw from it."""
    net = _network("cuda")
    before = torch.cuda.get_rng_state()
    GraphSolver(net, 32, 16, device="cuda", method="euler", steps=4)
    assert torch.equal(torch.cuda.get_rng_state(), before)
