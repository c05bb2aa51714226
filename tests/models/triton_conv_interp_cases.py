"""The Triton causal convolution + SiLU on CPU, in Triton's interpreter.

Not collected by default (no test_ prefix): ``test_triton_conv.py::test_interpreter_cases`` runs
this file in a child pytest with TRITON_INTERPRET=1, which must be set before triton is imported.
The reference is torch's depthwise Conv1d in float64, independent of both convolutions here.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch.func import vjp, vmap

import flowstudy.models.ssm.triton_conv as triton_conv
from flowstudy.models.ssm.branch import causal_conv_blc
from flowstudy.models.ssm.triton_conv import causal_conv_silu_triton

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1 before triton is imported"
)


def reference(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """silu(depthwise causal Conv1d): x [B, L, d], w [d, k] -> [B, L, d] (torch's kernels)."""
    L, k = x.shape[1], w.shape[-1]
    pre = F.conv1d(x.transpose(1, 2), w[:, None, :], bias, padding=k - 1, groups=x.shape[2])[..., :L]
    return F.silu(pre.transpose(1, 2))


def _inputs(batch=3, L=7, d=5, k=4, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, L, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, k, generator=g, dtype=torch.float64) * 0.5
    b = torch.randn(d, generator=g, dtype=torch.float64) * 0.3 if bias else None
    return x, w, b


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _check(x64, w64, b64, tol=1e-6, x_view=None):
    """Forward and the gradients of x, w, bias (fp32 kernels) against the float64 reference."""
    ours = [t.float().requires_grad_() if t is not None else None for t in (x64, w64, b64)]
    x_in = ours[0] if x_view is None else x_view(ours[0])
    ref = [t.clone().requires_grad_() if t is not None else None for t in (x64, w64, b64)]
    out = causal_conv_silu_triton(x_in, ours[1], ours[2])
    expected = reference(*ref)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    assert _rel(out, expected) < tol
    cot = torch.randn(expected.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    kept = [i for i, t in enumerate(ours) if t is not None]
    grads = torch.autograd.grad((out * cot.float()).sum(), [ours[i] for i in kept])
    ref_grads = torch.autograd.grad((expected * cot).sum(), [ref[i] for i in kept])
    for i, g, r in zip(kept, grads, ref_grads):
        assert _rel(g, r) < tol, ("x", "w", "bias")[i]


@pytest.mark.parametrize("shape", [dict(), dict(L=1), dict(k=1), dict(k=3, d=70), dict(batch=1, L=16, d=9, k=4)])
def test_forward_and_gradients_against_float64_conv1d(shape):
    _check(*_inputs(**shape))


def test_without_bias():
    _check(*_inputs(bias=False))


def test_several_rows_a_program_and_ragged_blocks(monkeypatch):
    """Row chunks of 2 over 5 rows (a ragged last chunk) and channel blocks of 2 over 5 channels."""
    launch = triton_conv._launch

    def two_rows_two_channels(x, w, bias):
        members, per_member, _, _, _, l_pad, _ = launch(x, w, bias)
        chunks = -(-per_member // 2)
        return members, per_member, 2, chunks, 2, l_pad, (members * chunks, -(-x.shape[2] // 2))

    monkeypatch.setattr(triton_conv, "_launch", two_rows_two_channels)
    _check(*_inputs(batch=5))


def test_strided_input():
    """x read through a transposed view ([B, d, L] memory seen as [B, L, d]), no copy."""
    x, w, b = _inputs()
    _check(x.transpose(1, 2).contiguous().transpose(1, 2), w, b, x_view=lambda t: t.transpose(1, 2).contiguous().transpose(1, 2))


def test_vmap_over_members_with_their_own_weights_equals_a_loop():
    """A stacked group's call: per-member x, weights and bias, folded into one launch."""
    K = 3
    xs, ws, bs = zip(*(_inputs(batch=2, seed=s) for s in range(K)))
    x, w, b = (torch.stack(t).float().requires_grad_() for t in (xs, ws, bs))
    out = vmap(causal_conv_silu_triton)(x, w, b)
    loop = torch.stack([reference(*(t.double() for t in (x[m], w[m], b[m]))) for m in range(K)])
    assert _rel(out, loop) < 1e-6
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad((out * cot).sum(), (x, w, b))
    ref = [t.detach().double().requires_grad_() for t in (x, w, b)]
    loop = torch.stack([reference(ref[0][m], ref[1][m], ref[2][m]) for m in range(K)])
    ref_grads = torch.autograd.grad((loop * cot.double()).sum(), ref)
    for name, g, r in zip(("x", "w", "bias"), grads, ref_grads):
        assert _rel(g, r) < 1e-6, name


def test_vmap_with_own_weights_and_a_shared_bias():
    """A parameter shared by the members gets the gradient summed over all their rows."""
    K = 2
    xs, ws, _ = zip(*(_inputs(batch=2, seed=s) for s in range(K)))
    x, w = (torch.stack(t).float().requires_grad_() for t in (xs, ws))
    b = _inputs()[2].float().requires_grad_()
    out = vmap(causal_conv_silu_triton, in_dims=(0, 0, None))(x, w, b)
    ref = [t.detach().double().requires_grad_() for t in (x, w, b)]
    loop = torch.stack([reference(ref[0][m], ref[1][m], ref[2]) for m in range(K)])
    assert _rel(out, loop) < 1e-6
    grads = torch.autograd.grad(out.square().sum(), (x, w, b))
    for name, g, r in zip(("x", "w", "bias"), grads, torch.autograd.grad(loop.square().sum(), ref)):
        assert g.shape == r.shape and _rel(g, r) < 1e-6, name


def test_vmapped_vjps_with_shared_weights_equal_one_at_a_time():
    """The exact NLL's batched vector-Jacobian products: vmap over cotangents of one call."""
    x, w, b = (t.float() for t in _inputs())
    out, pullback = vjp(lambda x_, w_, b_: causal_conv_silu_triton(x_, w_, b_), x, w, b)
    cots = torch.randn(4, *out.shape, generator=torch.Generator().manual_seed(3))
    batched = vmap(pullback)(cots)
    for c in range(4):
        one = pullback(cots[c])
        for name, g, r in zip(("x", "w", "bias"), batched, one):
            assert _rel(g[c], r) < 1e-6, name


def test_bf16_input_is_computed_in_fp32_and_returned_in_bf16():
    x, w, b = _inputs()
    out = causal_conv_silu_triton(x.bfloat16(), w.float(), b.float())
    assert out.dtype == torch.bfloat16
    assert _rel(out, reference(x.bfloat16().double(), w, b)) < 1e-2


def test_matches_the_pytorch_path():
    x, w, b = (t.float() for t in _inputs(batch=4, L=8, d=16))
    torch.testing.assert_close(causal_conv_silu_triton(x, w, b), F.silu(causal_conv_blc(x, w[:, None, :], b)), rtol=1e-5, atol=1e-6)
