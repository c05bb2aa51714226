"""The Triton scan's kernels on CPU, in Triton's interpreter.

Not collected by default (no test_ prefix): ``test_triton_scan.py::test_interpreter_cases``
runs this file in a child pytest with TRITON_INTERPRET=1, which must be set before triton
is imported and so cannot be switched on inside the main test process. Shapes are small and
odd (masking on every axis); the interpreter runs each program in numpy.
"""

from __future__ import annotations

import os

import pytest
import torch
from test_selective_scan import NAMES, _inputs, _rel

from flowstudy.models.ssm import MambaLayer, selective_scan_blc, selective_scan_ref, selective_scan_torch
from flowstudy.models.ssm.triton_scan import ScanConfig, selective_scan_triton, selective_scan_triton_blc

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="needs TRITON_INTERPRET=1 before triton is imported"
)
# Several row chunks, two channel splits, a ragged last channel block of each split.
SPLIT = ScanConfig(fwd_block_d=2, fwd_rows=2, fwd_warps=1, bwd_block_d=2, bwd_rows=2, bwd_splits=2, bwd_warps=1)


def _check(dtype, tol, drop=(), softplus=True, config=None, **shape):
    """Forward and every gradient against the float64 reference (shapes: batch, d, L, N)."""
    ours = _inputs(dtype, **{"batch": 3, "d": 5, "L": 7, "N": 3, **shape})
    ref = {k: v.detach().double().requires_grad_() for k, v in ours.items()}
    for name in drop:
        ours[name] = ref[name] = None
    out = selective_scan_triton(**ours, delta_softplus=softplus, config=config)
    expected = selective_scan_ref(**ref, delta_softplus=softplus)
    assert out.dtype == dtype and out.shape == expected.shape
    assert _rel(out, expected) < tol
    w = torch.randn(expected.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    kept = [k for k in NAMES if k not in drop]
    grads = torch.autograd.grad((out * w.to(dtype)).sum(), [ours[k] for k in kept])
    ref_grads = torch.autograd.grad((expected * w).sum(), [ref[k] for k in kept])
    for name, g, e in zip(kept, grads, ref_grads):
        assert g.dtype == dtype and _rel(g, e) < tol, name


@pytest.mark.parametrize("config", [None, SPLIT], ids=["default", "split"])
def test_float64_matches_reference(config):
    _check(torch.float64, 1e-12, config=config)


def test_float32_matches_reference():
    _check(torch.float32, 2e-6, config=SPLIT)


@pytest.mark.parametrize("drop", [("z",), ("D", "z", "delta_bias")])
def test_optional_arguments(drop):
    _check(torch.float64, 1e-12, drop=drop)


def test_without_softplus():
    _check(torch.float64, 1e-12, softplus=False)


def test_long_padded_sequence():
    """L = 100: the tile kernels pad it to 128 steps. N = 2."""
    _check(torch.float64, 1e-12, batch=1, d=2, L=100, N=2)


def test_strided_blc_inputs_match_torch_scan():
    """The [B, L, d] layout with the strides the Mamba layer produces (z from chunk, B and C
    from split) gives the PyTorch scan's output and gradients, read without copies."""
    g = torch.Generator().manual_seed(1)
    b, L, d, N, R = 2, 6, 5, 3, 2
    xz = torch.randn(b, L, 2 * d, generator=g, dtype=torch.float64)
    dbc = torch.randn(b, L, R + 2 * N, generator=g, dtype=torch.float64)
    u, z = xz.chunk(2, dim=-1)
    _, Bm, Cm = torch.split(dbc, [R, N, N], dim=-1)
    delta = 0.5 * torch.randn(b, L, d, generator=g, dtype=torch.float64)
    A, D, bias = -torch.rand(d, N, dtype=torch.float64) - 0.2, torch.randn(d), 0.1 * torch.randn(d)
    args = [t.requires_grad_() for t in (u, delta, A, Bm, Cm, D.double(), z, bias.double())]
    ref_args = [t.detach().clone().requires_grad_() for t in args]
    out = selective_scan_triton_blc(*args, delta_softplus=True)
    ref = selective_scan_blc(*ref_args, delta_softplus=True)
    assert not z.is_contiguous() and out.is_contiguous()  # output in [B, L, d] memory order
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    gr = torch.autograd.grad((out * w).sum(), args)
    gr_ref = torch.autograd.grad((ref * w).sum(), ref_args)
    for name, a, e in zip(NAMES, gr, gr_ref):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-12, msg=name)


def test_bf16_inputs_scan_in_fp32():
    """bf16 inputs are read into an fp32 state: the result is the fp32 scan of the upcast
    inputs, rounded once to bf16 (within one bf16 step: the interpreter's rounding mode is
    not the GPU's round-to-nearest)."""
    x = {k: v.detach() for k, v in _inputs(torch.float32, batch=3, d=5, L=7, N=3).items()}
    low = {k: (v.bfloat16() if k in ("u", "delta", "B", "C", "z") else v) for k, v in x.items()}
    out = selective_scan_triton(**low, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    up = selective_scan_triton(**{k: v.float() for k, v in low.items()}, delta_softplus=True)
    assert ((out.float() - up).abs() <= 2**-7 * up.abs()).all()
    assert _rel(up, selective_scan_torch(**{k: v.float() for k, v in low.items()}, delta_softplus=True)) < 2e-6


def test_mamba_layer_triton_matches_torch():
    """The layer's triton path (conv, projections, strided scan inputs) against its torch path."""
    torch.manual_seed(0)
    layer = MambaLayer(8, d_state=4, d_conv=3, backend="triton")
    h = torch.randn(2, 6, 8)
    out = layer(h)
    grads = torch.autograd.grad(out.square().sum(), list(layer.parameters()))
    layer.backend = "torch"
    ref = layer(h)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(layer.parameters()))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for (name, _), a, e in zip(layer.named_parameters(), grads, ref_grads):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6, msg=name)


# ----------------------------------------------------------------------- vmapped members
# Row chunks of 4 rows over members of 3: a chunk is cut at its member's end.
ROWS4 = ScanConfig(fwd_block_d=4, fwd_rows=4, fwd_warps=1, bwd_block_d=4, bwd_rows=4, bwd_splits=1, bwd_warps=1)


def _vmapped_vs_reference(k, dims, config, tol=1e-12):
    """vmap of the triton scan over k members (3 rows each; distinct A, D, delta_bias and data,
    stacked at dims[name], or member 0's shared where None) against the float64 reference run
    member by member: forward and every gradient."""
    from torch.func import vmap

    members = [{n: v.detach() for n, v in _inputs(torch.float64, batch=3, d=5, L=7, N=3, seed=i).items()} for i in range(k)]
    leaves = {n: (members[0][n].clone() if dims.get(n, 0) is None else torch.stack([m[n] for m in members], dims.get(n, 0)))
              for n in NAMES}
    leaves = {n: v.requires_grad_() for n, v in leaves.items()}
    in_dims = tuple(dims.get(n, 0) for n in NAMES)
    out = vmap(lambda *a: selective_scan_triton(*a, delta_softplus=True, config=config), in_dims=in_dims)(*leaves.values())
    loop = torch.stack([
        selective_scan_ref(*[v if dims.get(n, 0) is None else v.select(dims.get(n, 0), i) for n, v in leaves.items()],
                       delta_softplus=True)
        for i in range(k)
    ])
    assert out.shape == loop.shape and _rel(out, loop) < tol
    w = torch.randn(loop.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    grads = torch.autograd.grad((out * w).sum(), list(leaves.values()))
    ref_grads = torch.autograd.grad((loop * w).sum(), list(leaves.values()))
    for name, g, e in zip(NAMES, grads, ref_grads):
        assert g.shape == e.shape and _rel(g, e) < tol, name


@pytest.mark.parametrize("config", [None, SPLIT, ROWS4], ids=["default", "split", "rows4"])
def test_vmapped_members_match_reference(config):
    """K = 3 members folded into the kernels' rows, each reading its own A, D, bias; row chunks
    (2 or 4 rows) do not divide a member's 3 rows, and dA, dD, dbias partials sum per member."""
    _vmapped_vs_reference(3, {}, config)


def test_backward_shape_override_matches_reference(monkeypatch):
    """triton_scan.BACKWARD_SHAPE replaces the default backward launch of calls without a config:
    2-channel tiles, 3 splits of 5 channels, 2 rows a program over members of 3 rows, the same
    values and gradients."""
    from flowstudy.models.ssm import triton_scan

    used = []
    with_shape = triton_scan._with_backward_shape
    monkeypatch.setattr(triton_scan, "BACKWARD_SHAPE", (2, 1, 3, 2))
    monkeypatch.setattr(triton_scan, "_with_backward_shape", lambda cfg, shape: used.append(with_shape(cfg, shape)) or used[-1])
    _vmapped_vs_reference(3, {}, None)
    assert used and {(c.bwd_block_d, c.bwd_warps, c.bwd_splits, c.bwd_rows) for c in used} == {(2, 1, 3, 2)}


def test_vmapped_shared_parameters_and_moved_dims():
    """A and D shared by the members (member stride 0, gradients summed over all rows), the rest
    vmapped at other positions than 0."""
    _vmapped_vs_reference(2, {"A": None, "D": None, "u": 2, "delta_bias": 1, "B": None, "z": 1}, SPLIT)


def test_backward_vmapped_over_cotangents():
    """vmap(vjp_fn): the backward kernel with the cotangents folded into rows and A, D, bias read
    per cotangent at stride 0 gives, per cotangent, the plain backward's gradients."""
    from torch.func import vjp, vmap

    x = [v.detach() for v in _inputs(torch.float64, batch=3, d=5, L=7, N=3).values()]
    out, vjp_fn = vjp(lambda *a: selective_scan_triton(*a, delta_softplus=True, config=SPLIT), *x)
    cotangents = torch.randn(2, *out.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    batched = vmap(vjp_fn)(cotangents)
    for c in range(2):
        for name, g, e in zip(NAMES, batched, vjp_fn(cotangents[c])):
            assert g[c].shape == e.shape and _rel(g[c], e) < 1e-14, (c, name)


def test_torch_func_grad_of_the_vmapped_scan():
    """torch.func.grad over a vmapped call: the backward kernel runs as a Function under grad's
    transform and gives the member loop's gradients."""
    from torch.func import grad, vmap

    members = [{n: v.detach() for n, v in _inputs(torch.float64, batch=3, d=5, L=7, N=3, seed=i).items()} for i in range(2)]
    x = [torch.stack([m[n] for m in members]) for n in NAMES]
    w = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    scan = lambda *a: selective_scan_triton(*a, delta_softplus=True, config=SPLIT)  # noqa: E731
    grads = grad(lambda *a: (vmap(scan)(*a) * w).sum(), argnums=tuple(range(8)))(*x)
    leaves = [v.clone().requires_grad_() for v in x]
    loop = sum((selective_scan_ref(*[v[i] for v in leaves], delta_softplus=True) * w[i]).sum() for i in range(2))
    for name, g, e in zip(NAMES, grads, torch.autograd.grad(loop, leaves)):
        assert _rel(g, e) < 1e-12, name


# ----------------------------------------------------------------------- torch.compile
def _blc(x: dict) -> dict:
    """The inputs as the Mamba layer passes them: [B, L, d] and [B, L, N] memory, transposed views."""
    return {k: (v.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_() if v.dim() == 3 else v) for k, v in x.items()}


@pytest.mark.parametrize("layout", ["bdl", "blc"])
@pytest.mark.parametrize("drop", [(), ("D", "z", "delta_bias")], ids=["all", "without-optional"])
def test_custom_operators_pass_opcheck(layout, drop):
    """The operators torch.compile sees: schema, fake tensors (shapes, strides, dtypes) against the
    kernels' outputs, and the autograd registration, checked by torch.library.opcheck."""
    from flowstudy.models.ssm import triton_conv, triton_scan

    x = _inputs(torch.float32, batch=3, d=5, L=7, N=3)
    x = _blc(x) if layout == "blc" else x
    args = [None if k in drop else x[k] for k in NAMES] + [True]
    torch.library.opcheck(triton_scan._scan_op, args)
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(2, 7, 5, generator=g)
    xs = (xs.transpose(1, 2).contiguous().transpose(1, 2) if layout == "blc" else xs).requires_grad_()
    w, bias = torch.randn(5, 4, generator=g).requires_grad_(), torch.randn(5, generator=g).requires_grad_()
    torch.library.opcheck(triton_conv._conv_op, (xs, w, None if drop else bias))


def test_compiled_network_is_one_graph_and_equals_eager():
    """Under torch.compile the scan and the convolution are custom operators, so the Mamba network
    traces as one graph: a graph break inside its loop over layers would leave that loop eager.
    Compiled (AOT autograd, eager kernels) it gives the eager values and gradients."""
    import torch._dynamo

    from flowstudy.models.mamba_velocity import MambaVelocityNetwork

    torch.manual_seed(0)
    model = MambaVelocityNetwork(input_dim=16, chunk_size=4, hidden_dim=8, num_layers=2, d_state=4, time_embed_dim=8, backend="triton")
    with torch.no_grad():  # the output projection starts at zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(3, 16), torch.full((3,), 0.5)
    explained = torch._dynamo.explain(model)(x, t)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    ops = {str(n.target) for graph in explained.graphs for n in graph.graph.nodes}
    assert {"flowstudy.triton_selective_scan.default", "flowstudy.triton_conv_silu.default"} <= ops
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager")
    out, ref = compiled(x, t), model(x, t)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    params = list(model.parameters())
    grads = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
    ref_grads = torch.autograd.grad(ref.square().sum(), params, allow_unused=True)
    for (name, _), a, e in zip(model.named_parameters(), grads, ref_grads):
        assert (a is None) == (e is None), name
        if a is not None:
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6, msg=name)
