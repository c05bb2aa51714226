"""The Gluon backward of the Triton selective scan (flowstudy.models.ssm.gluon_scan).

Gluon has no interpreter, so the kernel itself is checked on CUDA only: against the float64
reference (all gradients, odd and Mamba shapes, several row chunks, channel splits and ragged
channel blocks, each lane count), against the tile backward, in the Mamba layer's [B, L, d]
views, with stacked members under vmap, and without D, z, bias and softplus. On CPU: where it
may launch, and that a config asking for it falls back to the tile backward."""

from __future__ import annotations

import pytest
import torch
from test_selective_scan import NAMES, _inputs, _rel

from flowstudy.models.ssm import selective_scan_ref

triton = pytest.importorskip("triton")
gluon_scan = pytest.importorskip("flowstudy.models.ssm.gluon_scan")
from flowstudy.models.ssm import triton_scan  # noqa: E402
from flowstudy.models.ssm.triton_scan import ScanConfig, selective_scan_triton  # noqa: E402

CUDA = torch.cuda.is_available()


def _cfg(lanes: int, rows: int = 3, splits: int = 2) -> ScanConfig:
    return ScanConfig(fwd_block_d=8, fwd_rows=2, fwd_warps=1, bwd_block_d=4, bwd_rows=rows, bwd_splits=splits,
                      bwd_warps=1, bwd_lanes=lanes)


def _x(batch, d, L, N, device="cpu", dtype=torch.float64):
    return {k: v.detach().to(device=device, dtype=dtype) for k, v in _inputs(torch.float64, batch, d, L, N).items()}


@pytest.mark.parametrize("L,N,lanes,ok", [(16, 16, 2, True), (8, 16, 1, True), (16, 16, 1, False), (8, 16, 4, True), (16, 16, 16, False),
                                          (3, 2, 2, False), (1, 16, 2, False), (128, 16, 2, False), (16, 64, 1, False)])
def test_eligible_sizes(L, N, lanes, ok):
    """Sizes the kernel takes: N at least 4 and the lanes, L at least 2, the state buffer within
    its shared memory (too large: L 128 x N 16 x 16 channels, 128 KiB; L 16 x N 16 x 32 channels, 52 KiB)."""
    assert gluon_scan.eligible(L, N, lanes) is ok


def test_layouts_cover_the_tiles():
    for lanes, fast in [(1, True), (2, False), (4, True), (2, True)]:
        block_d, sl, tile, tr, lt, log_l = gluon_scan.layouts(16, 16, lanes, channels_fast=fast)
        assert log_l == 4
        assert block_d == 32 // lanes
        assert sl.threads_per_warp == [block_d, lanes] and sl.size_per_thread == [1, 16 // lanes]
        assert tile.size_per_thread[0] * tile.threads_per_warp[0] * tile.size_per_thread[1] * tile.threads_per_warp[1] == 16 * block_d
        assert tr.size_per_thread[1] * tr.threads_per_warp[1] == block_d and lt == tr.threads_per_warp[0]


def test_config_falls_back_to_the_tile_backward_off_cuda():
    """bwd_lanes asks for the Gluon kernel (the default's 4); on CPU tensors (the interpreter, whose
    cases in test_triton_scan run the default config) the tile backward runs instead."""
    assert triton_scan.default_config(4096, 512, 16, 16).bwd_lanes == 4
    u = torch.zeros(2, 8, 16)
    assert triton_scan._gluon_backward(u, torch.zeros(2, 16, 16), triton.language.float32, 4) is None


# ---------------------------------------------------------------------------------------- CUDA


def _check(x, cfg, tol, softplus=True, blc=False):
    """out and every gradient of the triton scan with launch config cfg against the float64
    reference; blc: u, delta, z, B, C as [B, d, L] views of [B, L, d] memory (the Mamba layer's)."""
    def leaf(k, v):
        v = v.float().cuda()
        if blc and k in ("u", "delta", "z", "B", "C"):
            v = v.transpose(1, 2).contiguous().transpose(1, 2)
        return v.detach().requires_grad_()

    ours = {k: (leaf(k, v) if v is not None else None) for k, v in x.items()}
    ref = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in x.items()}
    out = selective_scan_triton(**ours, delta_softplus=softplus, config=cfg)
    expected = selective_scan_ref(**ref, delta_softplus=softplus)
    assert _rel(out.detach().double().cpu(), expected.detach()) < tol
    w = torch.randn(expected.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    names = [k for k in NAMES if ours[k] is not None]
    g = torch.autograd.grad((out * w.to(out)).sum(), [ours[k] for k in names])
    g_ref = torch.autograd.grad((expected * w).sum(), [ref[k] for k in names])
    for name, a, e in zip(names, g, g_ref):
        assert _rel(a.double().cpu(), e) < tol, (name, _rel(a.double().cpu(), e))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("shape,lanes,rows,splits", [
    ((2, 5, 7, 3), 2, 3, 2), ((4, 64, 16, 16), 2, 3, 2), ((4, 64, 8, 16), 1, 1, 1), ((4, 64, 16, 16), 4, 3, 3),
    ((5, 40, 8, 16), 2, 2, 1), ((3, 70, 13, 16), 2, 3, 2), ((2, 33, 16, 5), 4, 1, 2)],
    ids=["odd", "mamba-2", "mamba-1", "mamba-4", "ragged-channels", "ragged-time", "odd-states"])
def test_cuda_gluon_backward_matches_float64_reference(shape, lanes, rows, splits):
    assert gluon_scan.eligible(shape[2], shape[3], lanes)
    _check(_x(*shape), _cfg(lanes, rows, splits), tol=5e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_gluon_backward_in_the_layer_layout_and_without_options():
    _check(_x(6, 48, 8, 16), _cfg(2), tol=5e-5, blc=True)
    x = _x(4, 32, 16, 16)
    x.update(delta=torch.nn.functional.softplus(x["delta"] + x["delta_bias"][:, None]), D=None, z=None, delta_bias=None)
    _check(x, _cfg(2), tol=5e-5, softplus=False)  # delta > 0 as given: the states decay


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_gluon_backward_equals_tile_backward_at_the_mamba_shape():
    x = {k: v.float().cuda() for k, v in _x(64, 512, 16, 16).items()}
    x["A"] = -torch.rand(512, 16, device="cuda") * 4 - 0.1
    dout = torch.randn_like(x["u"])
    tile = triton_scan._backward(**x, softplus=True, dout=dout, cfg=_cfg(0, 8, 4))
    ours = triton_scan._backward(**x, softplus=True, dout=dout, cfg=_cfg(2, 8, 4))
    for name, a, b in zip(NAMES, ours, tile):  # fp32 sums in another order: ~3e-7 apart on an H200
        assert _rel(a, b) < 1e-5, (name, _rel(a, b))


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_gluon_backward_under_vmap_members():
    """Three members with their own A, D, delta_bias, folded into the rows: each member's
    gradients against its own float64 reference."""
    from torch.func import vmap

    xs = [_x(3, 24, 16, 16) for _ in range(3)]
    stacked = {k: torch.stack([x[k] for x in xs]).float().cuda().requires_grad_() for k in NAMES}
    cfg = _cfg(2, 2, 2)
    out = vmap(lambda *a: selective_scan_triton(**dict(zip(NAMES, a)), delta_softplus=True, config=cfg))(
        *(stacked[k] for k in NAMES))
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)).cuda()
    g = torch.autograd.grad((out * w).sum(), [stacked[k] for k in NAMES])
    for m, x in enumerate(xs):
        ref = {k: v.clone().requires_grad_() for k, v in x.items()}
        e = selective_scan_ref(**ref, delta_softplus=True)
        g_ref = torch.autograd.grad((e * w[m].double().cpu()).sum(), [ref[k] for k in NAMES])
        for name, a, b in zip(NAMES, g, g_ref):
            assert _rel(a[m].double().cpu(), b) < 5e-5, (m, name)
