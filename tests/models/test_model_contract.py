"""One contract, checked for every registered architecture at D = 1024 and D = 384."""

from __future__ import annotations

import json

import pytest
import torch

from flowstudy.models import count_parameters, create_model, list_architectures

ARCHS = list_architectures()
DIMS = [1024, 384]
BATCH = 3


def _perturb(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give every all-zero parameter (zero-initialised output / gate layers) small random
    values, so that outputs are non-zero and gradients reach every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _build(arch: str, dim: int, seed: int = 0, perturb: bool = True) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(arch, input_dim=dim)
    return _perturb(model) if perturb else model


def _inputs(dim: int, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, dim, generator=g), torch.rand(BATCH, generator=g)


@pytest.fixture(scope="module", params=[(a, d) for a in ARCHS for d in DIMS], ids=lambda p: f"{p[0]}-D{p[1]}")
def case(request):
    arch, dim = request.param
    return arch, dim, _build(arch, dim)


def test_registry_is_not_empty():
    families = {"mlp", "dit", "unet", "mamba", "mamba-tied", "mamba-merged"}
    for family in families:
        for size in ("", "-tiny", "-small", "-base"):
            assert family + size in ARCHS


def test_zero_output_at_initialisation(case):
    arch, dim, _ = case
    model = _build(arch, dim, perturb=False)
    x, t = _inputs(dim)
    out = model(x, t)
    assert out.shape == (BATCH, dim)
    assert torch.count_nonzero(out) == 0


def test_shape_finite_and_nontrivial(case):
    _, dim, model = case
    x, t = _inputs(dim)
    out = model(x, t)
    assert out.shape == (BATCH, dim) and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert out.abs().sum() > 0
    # rows are computed independently: the batch does not mix
    assert torch.allclose(model(x[:1], t[:1]), out[:1], atol=1e-5, rtol=1e-5)


def test_every_time_shape_gives_the_same_output(case):
    _, dim, model = case
    x, _ = _inputs(dim)
    ref = model(x, 0.3)
    for t in (torch.full((BATCH,), 0.3), torch.full((BATCH, 1), 0.3), torch.tensor(0.3)):
        torch.testing.assert_close(model(x, t), ref, rtol=0, atol=0)
    # and time matters
    assert not torch.allclose(model(x, 0.9), ref)


@pytest.mark.parametrize("shape", [(BATCH, 2), (BATCH + 1,), (BATCH, 1, 1), (1, BATCH)])
def test_bad_time_shapes_are_rejected(case, shape):
    _, dim, model = case
    x, _ = _inputs(dim)
    with pytest.raises(ValueError, match=rf"t must be .*B={BATCH}; got \({shape[0]}"):
        model(x, torch.zeros(shape))


def test_bad_x_is_rejected(case):
    _, dim, model = case
    with pytest.raises(ValueError, match=f"D={dim}"):
        model(torch.randn(BATCH, dim + 1), 0.5)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(dim), 0.5)


def test_gradients_reach_every_parameter(case):
    _, dim, model = case
    model.zero_grad(set_to_none=True)
    x, t = _inputs(dim)
    (model(x, t) ** 2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_save_load_round_trip(case, tmp_path):
    arch, dim, model = case
    path = tmp_path / "model.pt"
    torch.save({"arch": model.arch, "config": model.config, "state": model.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    assert json.loads(json.dumps(ckpt["config"])) == ckpt["config"]  # config is plain data
    torch.manual_seed(123)  # a different initialisation, overwritten by the load
    rebuilt = create_model(ckpt["arch"], **ckpt["config"])
    rebuilt.load_state_dict(ckpt["state"])
    assert rebuilt.arch == arch and rebuilt.config == model.config
    assert count_parameters(rebuilt) == count_parameters(model)
    x, t = _inputs(dim)
    torch.testing.assert_close(rebuilt(x, t), model(x, t), rtol=0, atol=0)


def test_same_seed_same_model(case):
    arch, dim, model = case
    x, t = _inputs(dim)
    again = _build(arch, dim)
    torch.testing.assert_close(again(x, t), model(x, t), rtol=0, atol=0)
    other = _build(arch, dim, seed=1)
    assert not torch.allclose(other(x, t), model(x, t))
