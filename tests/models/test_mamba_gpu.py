"""CUDA checks: the PyTorch scan on the GPU, and the fused mamba_ssm backend against it.

Skipped without CUDA; the fused-backend tests also need mamba_ssm's kernels to import
and run (``flowstudy.models.ssm.fused_status()``).
"""

from __future__ import annotations

import copy

import pytest
import torch

from flowstudy.models.mamba_velocity import MambaVelocityNetwork
from flowstudy.models.ssm import MambaLayer, fused_status, selective_scan_torch

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA")]
needs_fused = pytest.mark.skipif(
    not (CUDA and fused_status()[0]), reason=f"fused Mamba backend unavailable: {fused_status()[1]}"
)
RTOL, ATOL = 6e-4, 2e-3


def _net(mode: str = "separate", seed: int = 0, **kw) -> MambaVelocityNetwork:
    torch.manual_seed(seed)
    net = MambaVelocityNetwork(bidirectional=mode, backend="torch", **kw)
    torch.nn.init.normal_(net.output_proj.weight, std=0.05)
    return net


def _grads(net, x, t):
    net.zero_grad(set_to_none=True)
    out = net(x, t)
    (out.square().mean()).backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in net.named_parameters()}


def _assert_close_all(a, b):
    out_a, g_a = a
    out_b, g_b = b
    torch.testing.assert_close(out_a, out_b, rtol=RTOL, atol=ATOL)
    for name in g_a:
        torch.testing.assert_close(g_a[name], g_b[name], rtol=RTOL, atol=ATOL, msg=name)


@pytest.mark.parametrize("mode", ["separate", "tied", "merged"])
def test_torch_backend_cuda_matches_cpu(mode):
    net = _net(mode)
    x, t = torch.randn(64, 1024), torch.rand(64)
    cpu = _grads(net, x, t)
    gpu_net = copy.deepcopy(net).cuda()
    out, grads = _grads(gpu_net, x.cuda(), t.cuda())
    _assert_close_all(cpu, (out.cpu(), {k: v.cpu() for k, v in grads.items()}))


def test_torch_backend_bf16_autocast():
    net = _net().cuda()
    x, t = torch.randn(32, 1024, device="cuda"), torch.rand(32, device="cuda")
    ref = net(x, t)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = net(x, t)
    low.float().square().mean().backward()
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


@needs_fused
def test_fused_scan_matches_torch_scan():
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    g = torch.Generator().manual_seed(0)
    b, d, L, n = 8, 64, 16, 16
    vals = [torch.randn(b, d, L, generator=g), 0.5 * torch.randn(b, d, L, generator=g),
            -torch.rand(d, n, generator=g) * 4, torch.randn(b, n, L, generator=g),
            torch.randn(b, n, L, generator=g), torch.randn(d, generator=g),
            torch.randn(b, d, L, generator=g), 0.3 * torch.randn(d, generator=g)]
    ins_a = [v.cuda().requires_grad_() for v in vals]
    ins_b = [v.cuda().requires_grad_() for v in vals]
    out_a = selective_scan_fn(*ins_a[:6], z=ins_a[6], delta_bias=ins_a[7], delta_softplus=True)
    out_b = selective_scan_torch(*ins_b[:6], z=ins_b[6], delta_bias=ins_b[7], delta_softplus=True)
    torch.testing.assert_close(out_a, out_b, rtol=RTOL, atol=ATOL)
    w = torch.randn_like(out_a)
    (out_a * w).sum().backward()
    (out_b * w).sum().backward()
    for a, b_ in zip(ins_a, ins_b):
        torch.testing.assert_close(a.grad, b_.grad, rtol=RTOL, atol=ATOL)


@needs_fused
@pytest.mark.parametrize("mode", ["separate", "tied", "merged"])
def test_fused_matches_torch_on_same_weights(mode):
    net = _net(mode).cuda()
    x, t = torch.randn(64, 1024, device="cuda"), torch.rand(64, device="cuda")
    ref = _grads(net, x, t)
    net.set_backend("fused")
    _assert_close_all(_grads(net, x, t), ref)


@needs_fused
def test_state_dict_moves_between_backends(tmp_path):
    fused = _net(seed=3).cuda()
    fused.set_backend("fused")
    opt = torch.optim.Adam(fused.parameters(), lr=1e-3)
    x, t = torch.randn(32, 1024, device="cuda"), torch.rand(32, device="cuda")
    for _ in range(3):  # move the weights away from their initialisation
        opt.zero_grad()
        fused(x, t).square().mean().backward()
        opt.step()
    torch.save(fused.state_dict(), tmp_path / "w.pt")
    torch_cpu = MambaVelocityNetwork(backend="torch")
    torch_cpu.load_state_dict(torch.load(tmp_path / "w.pt", map_location="cpu"))
    with torch.no_grad():
        torch.testing.assert_close(
            torch_cpu(x.cpu(), t.cpu()), fused(x, t).cpu(), rtol=RTOL, atol=ATOL
        )
    back = MambaVelocityNetwork(backend="fused").cuda()
    back.load_state_dict(torch_cpu.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(back(x, t), fused(x, t), rtol=0, atol=0)


@needs_fused
def test_layer_state_dict_loads_into_mamba_ssm():
    from mamba_ssm.modules.mamba_simple import Mamba

    torch.manual_seed(0)
    ours = MambaLayer(256, backend="torch").cuda()
    theirs = Mamba(256, d_state=16, d_conv=4, expand=2).cuda()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    h = torch.randn(16, 16, 256, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(theirs(h), ours(h), rtol=RTOL, atol=ATOL)
        ours.backend = "fused"
        torch.testing.assert_close(theirs(h), ours(h), rtol=RTOL, atol=ATOL)
    # and back: mamba_ssm's weights load into ours
    reloaded = MambaLayer(256)
    reloaded.load_state_dict(theirs.state_dict(), strict=True)


@needs_fused
def test_same_seed_same_initialisation_as_mamba_ssm():
    from mamba_ssm.modules.mamba_simple import Mamba

    torch.manual_seed(0)
    ours = MambaLayer(256).state_dict()
    torch.manual_seed(0)
    theirs = Mamba(256).state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=0, msg=k)
