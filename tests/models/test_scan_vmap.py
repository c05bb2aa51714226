"""The PyTorch selective scan under torch.func: a vmapped call equals the loop over its members.

The vmap rule folds the K members into the batch rows with per-member A, D and delta_bias
(flowstudy.models.ssm.torch_scan.MemberFold); every check here compares it, forward and
gradients, with the member-by-member loop in float64. The Triton scan's rule runs the same
folding through its kernels: see triton_interp_cases.py. At the network level, K stacked Mamba
networks under vmap(functional_call) give each member's outputs and parameter gradients, and a
StackedGroup of Mamba members runs vmapped.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_selective_scan import NAMES, _inputs
from torch.func import functional_call, grad, stack_module_state, vjp, vmap

import flowstudy.models.ssm.torch_scan as scan_mod
from flowstudy.models import create_model
from flowstudy.models.ssm import selective_scan_torch

K = 3
SHAPE = {"batch": 3, "d": 4, "L": 5, "N": 2}  # 3 rows per member


def _members(k=K, seed=0, **shape):
    """k members' float64 inputs, each from its own seed: distinct A, D, delta_bias, data."""
    return [{n: v.detach() for n, v in _inputs(torch.float64, seed=seed + i, **{**SHAPE, **shape}).items()} for i in range(k)]


def _stacked(members, dims, drop=()):
    """Leaf tensors for a vmapped call: member values stacked at dims[name], or member 0's shared
    by all (dims[name] None); and a function giving member k's arguments from those leaves."""
    leaves = {}
    for n in NAMES:
        if n in drop:
            leaves[n] = None
        elif dims.get(n, 0) is None:
            leaves[n] = members[0][n].clone().requires_grad_()
        else:
            leaves[n] = torch.stack([m[n] for m in members], dim=dims.get(n, 0)).requires_grad_()

    def member(k):
        return {n: (v if v is None or dims.get(n, 0) is None else v.select(dims.get(n, 0), k)) for n, v in leaves.items()}

    return leaves, member


def _scan(softplus=True):
    return lambda *args: selective_scan_torch(*args, delta_softplus=softplus)


def _check_vmap_equals_loop(dims, drop=(), softplus=True, k=K):
    members = _members(k)
    leaves, member = _stacked(members, dims, drop)
    scan = _scan(softplus)
    in_dims = tuple(None if leaves[n] is None else dims.get(n, 0) for n in NAMES)
    out = vmap(scan, in_dims=in_dims)(*leaves.values())  # [K, B, d, L]
    loop = torch.stack([scan(*member(i).values()) for i in range(k)])
    torch.testing.assert_close(out, loop, rtol=1e-12, atol=1e-14)
    w = torch.randn(loop.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    kept = [n for n in NAMES if leaves[n] is not None]
    grads = torch.autograd.grad((out * w).sum(), [leaves[n] for n in kept])
    loop_grads = torch.autograd.grad((loop * w).sum(), [leaves[n] for n in kept])
    for name, g, e in zip(kept, grads, loop_grads):
        assert g.abs().max() > 0, name  # every input gets a gradient (no vacuous comparison)
        torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-13, msg=name)


CASES = {
    "all-batched": {},
    "shared-params": {"A": None, "D": None, "delta_bias": None},  # one A for all: dA summed over members
    "moved-dims": {"u": 2, "delta": 1, "A": 1, "B": None, "C": 3, "D": 0, "z": 1, "delta_bias": None},
    "params-only": {"u": None, "delta": None, "B": None, "C": None, "z": None},  # shared data, own parameters
}


@pytest.mark.parametrize("dims", CASES.values(), ids=CASES.keys())
def test_vmap_equals_the_loop_over_members(dims):
    _check_vmap_equals_loop(dims)


def test_vmap_without_optional_arguments():
    _check_vmap_equals_loop({"u": 1}, drop=("D", "z", "delta_bias"), softplus=False, k=2)


@pytest.mark.parametrize("dims", [CASES["all-batched"], CASES["moved-dims"]], ids=["all-batched", "moved-dims"])
def test_blocks_straddling_members(monkeypatch, dims):
    """Blocks of 2 rows over members of 3 rows: a block reads A per row and adds its dA per member."""
    monkeypatch.setattr(scan_mod, "_CPU_BLOCK_ELEMS", 2 * SHAPE["L"] * SHAPE["N"] * SHAPE["d"])
    _check_vmap_equals_loop(dims)


def test_torch_func_grad_of_the_vmapped_scan():
    """torch.func.grad of a vmapped call (the inner Function's backward under grad's transform)."""
    leaves, member = _stacked(_members(), CASES["moved-dims"])
    dims = tuple(CASES["moved-dims"].get(n, 0) for n in NAMES)
    w = torch.randn(K, 3, 4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    scan = _scan()
    loss = lambda *args: (vmap(scan, in_dims=dims)(*args) * w).sum()  # noqa: E731
    grads = grad(loss, argnums=tuple(range(8)))(*(v.detach() for v in leaves.values()))
    loop = sum((scan(*member(i).values()) * w[i]).sum() for i in range(K))
    expected = torch.autograd.grad(loop, list(leaves.values()))
    for name, g, e in zip(NAMES, grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-13, msg=name)


def test_per_member_gradients_under_vmap_of_grad():
    """vmap(grad(loss)): each member's gradients, A shared by the members but its gradient per member."""
    members = _members()
    dims = {"A": None}
    leaves, member = _stacked(members, dims)
    w = torch.randn(K, 3, 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    scan = _scan()
    loss = lambda *args: (scan(*args[:8]) * args[8]).sum()  # noqa: E731
    in_dims = tuple(dims.get(n, 0) for n in NAMES) + (0,)
    grads = vmap(grad(loss, argnums=tuple(range(8))), in_dims=in_dims)(*(v.detach() for v in leaves.values()), w)
    for i in range(K):
        args = {n: v.detach().requires_grad_() for n, v in member(i).items()}
        expected = torch.autograd.grad((scan(*args.values()) * w[i]).sum(), list(args.values()))
        for name, g, e in zip(NAMES, grads, expected):
            torch.testing.assert_close(g[i], e, rtol=1e-11, atol=1e-13, msg=f"member {i}: {name}")


@pytest.mark.parametrize("nested", [False, True], ids=["plain", "of-vmapped-scan"])
def test_vmap_over_cotangents(nested):
    """vmap(vjp_fn) runs the backward under vmap: one gradient per cotangent. Of a vmapped scan
    ("of-vmapped-scan": members folded, A shared) the backward's rule folds cotangents over members."""
    scan = _scan()
    if nested:
        leaves, _ = _stacked(_members(), {"A": None})
        f = vmap(scan, in_dims=tuple(None if n == "A" else 0 for n in NAMES))
        args = [v.detach() for v in leaves.values()]
    else:
        args = list(_members(1)[0].values())
        f = scan
    out, vjp_fn = vjp(f, *args)
    cotangents = torch.randn(4, *out.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    batched = vmap(vjp_fn)(cotangents)
    for c in range(4):
        for name, g, e in zip(NAMES, batched, vjp_fn(cotangents[c])):
            assert g[c].shape == e.shape, name
            torch.testing.assert_close(g[c], e, rtol=1e-11, atol=1e-13, msg=f"cotangent {c}: {name}")


def test_nested_vmap_equals_the_double_loop():
    """vmap of vmap: the outer rule folds members that already carry the inner fold's; A is shared
    by the inner members and batched over the outer ones."""
    outer, inner = 2, 2
    members = [_members(inner, seed=10 * j) for j in range(outer)]
    leaves = {}
    for n in NAMES:
        if n == "A":
            leaves[n] = torch.stack([m[0][n] for m in members]).requires_grad_()  # [outer, d, N]
        else:
            leaves[n] = torch.stack([torch.stack([x[n] for x in m]) for m in members]).requires_grad_()
    scan = _scan()
    inner_dims = tuple(None if n == "A" else 0 for n in NAMES)
    out = vmap(vmap(scan, in_dims=inner_dims))(*leaves.values())  # [outer, inner, B, d, L]
    loop = torch.stack([
        torch.stack([scan(*[v[j] if n == "A" else v[j, i] for n, v in leaves.items()]) for i in range(inner)])
        for j in range(outer)
    ])
    torch.testing.assert_close(out, loop, rtol=1e-12, atol=1e-14)
    w = torch.randn(loop.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    grads = torch.autograd.grad((out * w).sum(), list(leaves.values()))
    expected = torch.autograd.grad((loop * w).sum(), list(leaves.values()))
    for name, g, e in zip(NAMES, grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-13, msg=name)


def test_member_axes_must_agree():
    x = _members(1)[0]
    A = torch.stack([x["A"]] * 2)  # 2 members
    D = torch.stack([x["D"]] * 3)  # 3 members
    t = lambda v: v.transpose(1, 2)  # noqa: E731
    with pytest.raises(ValueError, match=r"member axes of A, D, delta_bias \(\[2, 3\]\) must agree"):
        scan_mod._SelectiveScan.apply(t(x["u"]), t(x["delta"]), A, t(x["B"]), t(x["C"]), D, None, None, True)


# ---------------------------------------------------------------------------------------- networks


def _mamba_members(arch, k=K):
    """k float64 Mamba networks with distinct weights: zero-initialised layers (output, time
    projections) and the deterministic A_log, D made random so every parameter gets a gradient."""
    models = []
    for i in range(k):
        torch.manual_seed(i)
        model = create_model(arch, input_dim=16, chunk_size=4, hidden_dim=16, num_layers=1, d_state=4,
                             time_embed_dim=16, backend="torch").double()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        models.append(model)
    return models


@pytest.mark.parametrize("arch", ["mamba-tiny", "mamba-merged-tiny"])
def test_stacked_mamba_networks_equal_each_member(arch):
    """vmap(functional_call) over stacked weights, then plain autograd (as StackedGroup steps):
    each member's velocity and parameter gradients. float64, so agreement is to rounding."""
    models = _mamba_members(arch)
    params, buffers = stack_module_state(models)
    template = copy.deepcopy(models[0]).to("meta")
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(K, 5, 16, generator=g, dtype=torch.float64), torch.rand(K, 5, generator=g, dtype=torch.float64)
    out = vmap(lambda p, b, xk, tk: functional_call(template, (p, b), (xk, tk)))(params, buffers, x, t)  # [K, 5, 16]
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out * w).sum().backward()
    for i, model in enumerate(models):
        v = model(x[i], t[i])
        torch.testing.assert_close(out[i], v, rtol=1e-12, atol=1e-13)
        (v * w[i]).sum().backward()
        for name, p in model.named_parameters():
            assert p.grad.abs().max() > 0, name
            torch.testing.assert_close(params[name].grad[i], p.grad, rtol=1e-10, atol=1e-12, msg=f"member {i}: {name}")


def test_stacked_group_of_mamba_members_runs_vmapped(tmp_path, tiny_data):
    """A StackedGroup of Mamba members batches them with vmap (it used to evaluate them one by one),
    and trains what the member-by-member evaluation of the same draws trains."""
    from flowstudy.train import TrainConfig, load_checkpoint
    from flowstudy.train.stacked import StackedGroup

    model = {"chunk_size": 4, "hidden_dim": 16, "num_layers": 1, "d_state": 4, "backend": "torch"}
    configs = [
        TrainConfig(data=f"{tiny_data}:train", arch="mamba-tiny", model=model, steps=3, batch_size=16, lr=2e-3,
                    val_every=3, device="cpu", seed=s).validate()
        for s in range(2)
    ]
    vmapped = StackedGroup(configs, [tmp_path / f"v{k}" for k in range(2)])
    vmapped.fit()
    assert vmapped.vmapped
    looped = StackedGroup(configs, [tmp_path / f"l{k}" for k in range(2)], vmap=False)
    looped.fit()
    initial = {"A_log": torch.log(torch.arange(1.0, 5.0)).expand(32, 4), "D": torch.ones(32)}  # mamba_ssm's init
    for k in range(2):
        a = load_checkpoint(tmp_path / f"l{k}/checkpoints/last.pt")["model"]
        b = load_checkpoint(tmp_path / f"v{k}/checkpoints/last.pt")["model"]
        for name in a:  # float32: batched and separate matrix products round differently (~1e-7)
            error = float((b[name] - a[name]).norm() / a[name].norm().clamp_min(1e-12))
            assert error < 1e-4, f"member {k}: {name}: {error:.1e}"
            start = initial.get(name.rsplit(".", 1)[-1])
            if start is not None:  # the scan's own parameters moved, and alike: their gradients agree
                moved = float((a[name] - start).norm())
                assert moved > 0 and float((b[name] - a[name]).norm()) < 1e-3 * moved, f"member {k}: {name}"


def test_exact_divergence_of_a_mamba_network_through_torch_func():
    """The likelihood's torch.func path (vjp, vmapped over basis cotangents: the backward's vmap
    rule) now takes Mamba networks; it gives the plain-autograd fallback's divergence."""
    from flowstudy.flows.divergence import divergence_exact

    model = _mamba_members("mamba-tiny", k=1)[0]
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(3, 16, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64)
    v, div = divergence_exact(model, x, t, chunk=8, functional=True)
    v_ref, div_ref = divergence_exact(model, x, t, chunk=8, functional=False)
    torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(div, div_ref, rtol=1e-10, atol=1e-12)
    assert div.abs().min() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_vmapped_triton_scan_equals_the_loop_at_the_network_shape():
    """The compiled kernels (not the interpreter) with K = 8 members of the Mamba shape (d_inner
    512, L = N = 16) in fp32: the folded call gives the member loop's output and gradients up to
    the order of fp32 sums (the dA, dD partials are summed in other chunks)."""
    pytest.importorskip("triton")
    from flowstudy.models.ssm.triton_scan import selective_scan_triton

    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(8, *s, generator=g, device="cuda")  # noqa: E731
    blc = lambda b, c, L: r(b, L, c).transpose(-1, -2)  # noqa: E731  [K, B, c, L] in the layer's layout
    x = [blc(64, 512, 16), 0.5 * blc(64, 512, 16), -torch.exp(r(512, 16)), blc(64, 16, 16), blc(64, 16, 16), r(512),
         blc(64, 512, 16), 0.3 * r(512) - 4]
    x = [v.requires_grad_() for v in x]
    out = vmap(lambda *a: selective_scan_triton(*a, delta_softplus=True))(*x)
    loop = torch.stack([selective_scan_triton(*[v[k] for v in x], delta_softplus=True) for k in range(8)])
    torch.testing.assert_close(out, loop, rtol=0, atol=0)  # the same programs on the same rows
    w = torch.randn(out.shape, generator=g, device="cuda")
    grads = torch.autograd.grad((out * w).sum(), x)
    loop_grads = torch.autograd.grad((loop * w).sum(), x)
    for name, a, e in zip(NAMES, grads, loop_grads):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6, msg=name)
