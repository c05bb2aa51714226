"""The PyTorch selective scan against a slow sequential float64 reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import flowstudy.models.ssm.torch_scan as scan_mod
from flowstudy.models.ssm import selective_scan_blc, selective_scan_ref, selective_scan_torch

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _inputs(dtype, batch=4, d=6, L=9, N=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    vals = dict(
        u=r(batch, d, L),
        delta=0.5 * r(batch, d, L),
        A=-torch.exp(r(d, N)),  # negative real, spread over a decade
        B=r(batch, N, L),
        C=r(batch, N, L),
        D=r(d),
        z=r(batch, d, L),
        delta_bias=0.3 * r(d),
    )
    return {k: v.to(dtype).requires_grad_() for k, v in vals.items()}


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _check(dtype, tol, drop=(), softplus=True, **kw):
    ours = _inputs(dtype, **kw)
    ref = {k: v.detach().double().requires_grad_() for k, v in ours.items()}
    for name in drop:
        ours[name] = ref[name] = None
    out = selective_scan_torch(**ours, delta_softplus=softplus)
    expected = selective_scan_ref(**ref, delta_softplus=softplus)
    assert out.dtype == dtype and out.shape == expected.shape
    assert _rel(out, expected) < tol
    w = torch.randn(expected.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    (out * w.to(dtype)).sum().backward()
    (expected * w).sum().backward()
    for name in NAMES:
        if name in drop:
            continue
        assert ours[name].grad is not None, name
        assert _rel(ours[name].grad, ref[name].grad) < tol, name


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_forward_and_gradients_match_reference(dtype, tol):
    _check(dtype, tol)


@pytest.mark.parametrize("drop", [("D",), ("z",), ("delta_bias",), ("D", "z", "delta_bias")])
def test_optional_arguments(drop):
    _check(torch.float64, 1e-12, drop=drop)


def test_without_softplus():
    _check(torch.float64, 1e-12, softplus=False)


def test_blocked_batch_matches(monkeypatch):
    """Blocks over the batch (including a ragged last one) give the same result."""
    monkeypatch.setattr(scan_mod, "_CPU_BLOCK_ELEMS", 2 * 9 * 5 * 6)  # 2 rows per block
    _check(torch.float64, 1e-12, batch=5)


def test_layouts_agree():
    """selective_scan_blc ([B, L, d]) is selective_scan_torch ([B, d, L]) transposed."""
    x = {k: v.detach() for k, v in _inputs(torch.float64).items()}
    out = selective_scan_torch(**x, delta_softplus=True)
    t = lambda v: v.transpose(1, 2)  # noqa: E731
    blc = selective_scan_blc(
        t(x["u"]), t(x["delta"]), x["A"], t(x["B"]), t(x["C"]), x["D"], t(x["z"]),
        x["delta_bias"], True,
    )
    torch.testing.assert_close(t(blc), out, rtol=1e-14, atol=1e-14)


def test_gradcheck():
    x = _inputs(torch.float64, batch=2, d=3, L=4, N=2)
    args = [x[k] for k in NAMES]
    assert torch.autograd.gradcheck(
        lambda *a: selective_scan_torch(*a, delta_softplus=True), args, eps=1e-6, atol=1e-7
    )


def test_state_is_fp32_for_bf16_inputs():
    """bf16 inputs (as under autocast) are scanned in fp32 and the result rounded once."""
    x = {k: v.detach() for k, v in _inputs(torch.float32).items()}
    low = {k: (v.bfloat16() if k in ("u", "delta", "B", "C", "z") else v) for k, v in x.items()}
    out = selective_scan_torch(**low, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    up = {k: v.float() for k, v in low.items()}
    expected = selective_scan_torch(**up, delta_softplus=True)
    torch.testing.assert_close(out, expected.bfloat16(), rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = selective_scan_torch(**up, delta_softplus=True)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, expected, rtol=0, atol=0)


@pytest.mark.parametrize("scan", [selective_scan_torch, selective_scan_ref], ids=["torch", "reference"])
def test_long_decay_matches_closed_form(scan):
    """A single channel with constant input: h_L = u dt (1 - a^L) / (1 - a), a = exp(dt A).

    The reference is held to the closed form too: it is what every fast scan is tested against."""
    L, dt, A, u = 16, 0.2, -1.5, 0.7
    out = scan(
        torch.full((1, 1, L), u, dtype=torch.float64),
        torch.full((1, 1, L), dt, dtype=torch.float64),
        torch.tensor([[A]], dtype=torch.float64),
        torch.ones(1, 1, L, dtype=torch.float64),
        torch.ones(1, 1, L, dtype=torch.float64),
    )
    a = torch.exp(torch.tensor(dt * A, dtype=torch.float64))
    k = torch.arange(1, L + 1, dtype=torch.float64)
    torch.testing.assert_close(out[0, 0], u * dt * (1 - a**k) / (1 - a), rtol=1e-13, atol=0)


def test_reference_skip_and_gate_match_closed_form():
    """With D and z: out_t = (C_t . h_t + D u_t) * z_t sigmoid(z_t); softplus applied to delta + bias."""
    L, A, u, D, z, raw, bias = 5, -0.8, 1.3, 0.4, 0.9, 0.1, -0.3
    dt = torch.log1p(torch.exp(torch.tensor(raw + bias, dtype=torch.float64)))
    out = selective_scan_ref(
        torch.full((1, 1, L), u), torch.full((1, 1, L), raw), torch.tensor([[A]]), torch.ones(1, 1, L), torch.ones(1, 1, L),
        D=torch.tensor([D]), z=torch.full((1, 1, L), z), delta_bias=torch.tensor([bias]), delta_softplus=True,
    )
    a = torch.exp(dt * A)
    k = torch.arange(1, L + 1, dtype=torch.float64)
    h = u * dt * (1 - a**k) / (1 - a)
    gate = z * torch.sigmoid(torch.tensor(z, dtype=torch.float64))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[0, 0], (h + D * u) * gate, rtol=1e-6, atol=0)
