"""The Triton selective scan: argument checks and launch shapes on CPU, its kernels in Triton's
interpreter (a child process, see triton_interp_cases.py), and on CUDA against the float64
reference, the PyTorch scan and mamba_ssm's fused kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_selective_scan import NAMES, _inputs, _rel

from flowstudy.errors import ConfigError
from flowstudy.models.ssm import fused_status, resolve_backend, selective_scan_ref, selective_scan_torch, triton_status

triton = pytest.importorskip("triton")
from flowstudy.models.ssm.triton_scan import (  # noqa: E402
    ScanConfig,
    default_config,
    selective_scan_triton,
    selective_scan_triton_blc,
)

CUDA = torch.cuda.is_available()
SPLIT = ScanConfig(fwd_block_d=8, fwd_rows=3, fwd_warps=2, bwd_block_d=4, bwd_rows=3, bwd_splits=3, bwd_warps=2)


def _x(batch, d, L, N, device="cpu", dtype=torch.float64):
    """Fresh float64 inputs of test_selective_scan (odd spreads of A, delta and the bias)."""
    return {k: v.detach().to(device=device, dtype=dtype) for k, v in _inputs(torch.float64, batch, d, L, N).items()}


def test_interpreter_cases(interpreted):
    """Forward and every gradient against the float64 reference in Triton's interpreter (a child
    process: see triton_interp_cases.py)."""
    interpreted(Path(__file__).parent / "triton_interp_cases.py")


def test_rejects_long_sequences_and_bad_shapes():
    x = _x(1, 2, 129, 2)
    with pytest.raises(ConfigError, match="at most 128 steps; got L=129"):
        selective_scan_triton(**x)
    x = _x(2, 3, 4, 2)
    x["delta"] = x["delta"][:, :, :3]
    with pytest.raises(ValueError, match=r"delta must have shape \[2, 3, 4\]; got \[2, 3, 3\]"):
        selective_scan_triton(**x)
    with pytest.raises(ValueError, match=r"expects u \[B, L, d\], B \[B, L, N\]"):
        selective_scan_triton_blc(x["u"][0], x["delta"], x["A"], x["B"], x["C"])


@pytest.mark.skipif(CUDA, reason="checks the CPU-only behaviour")
def test_backend_needs_cuda_outside_the_interpreter():
    ok, reason = triton_status()
    assert not ok and "CUDA is not available" in reason
    with pytest.raises(RuntimeError, match="backend='triton' runs on CUDA tensors only"):
        resolve_backend("triton", torch.device("cpu"))


@pytest.mark.parametrize("batch,dim,L,N", [(4096, 512, 16, 16), (256, 512, 16, 16), (3, 5, 128, 16), (1, 1, 1, 1),
                                         (16384, 512, 8, 16), (2304, 512, 8, 16)])
def test_default_config_fits_tiles_and_fills_the_device(batch, dim, L, N):
    cfg = default_config(batch, dim, L, N, n_sm=132)
    lp, np_ = triton.next_power_of_2(L), triton.next_power_of_2(N)
    for bd, budget in ((cfg.fwd_block_d, 8192 if cfg.fwd_block_d == 64 else 2048), (cfg.bwd_block_d, 1024)):
        assert bd & (bd - 1) == 0 and bd * lp * np_ <= max(budget, lp * np_)
    assert 1 <= cfg.bwd_splits <= triton.cdiv(dim, cfg.bwd_block_d)
    if batch * dim >= 256 * 512:  # large problems: at least 8 programs per multiprocessor
        assert triton.cdiv(batch, cfg.fwd_rows) * triton.cdiv(dim, cfg.fwd_block_d) >= 8 * 132
        assert triton.cdiv(batch, cfg.bwd_rows) * cfg.bwd_splits >= 8 * 132


@pytest.mark.parametrize("batch,L,channels", [(16384, 8, 64), (32768, 4, 64), (8192, 8, 16), (2304, 8, 16), (16384, 16, 8)])
def test_forward_tiles_widen_to_64_channels_only_for_short_sequences_over_many_rows(batch, L, channels):
    """Sampling 16,384 rows at L = 8 (64-channel tiles measured 0.76 against 0.93 ms on an H200);
    a 9-member training group of 2,304 rows keeps 16 (0.14 against 0.27 ms), as do 8,192 rows
    (too few programs of 64 channels) and L = 16 (a 64-channel tile would hold 16,384 states)."""
    assert default_config(batch, 512, L, 16, n_sm=132).fwd_block_d == channels


def test_backward_shape_replaces_the_default_backward_fields_and_is_checked():
    from flowstudy.models.ssm.triton_scan import _with_backward_shape, parse_backward_shape

    base = default_config(2304, 512, 8, 16)
    assert _with_backward_shape(base, None) is base
    cfg = _with_backward_shape(base, (4, 1, 8, 2))
    assert (cfg.bwd_block_d, cfg.bwd_warps, cfg.bwd_splits, cfg.bwd_rows) == (4, 1, 8, 2)
    assert (cfg.fwd_block_d, cfg.fwd_rows, cfg.fwd_warps) == (base.fwd_block_d, base.fwd_rows, base.fwd_warps)
    assert _with_backward_shape(base, (4, 1, 8, 2, 2)).bwd_lanes == 2 and cfg.bwd_lanes == 0
    for bad in [(3, 1, 8, 2), (4, 3, 8, 2), (4, 1, 0, 2), (4, 1, 8, 0), (4, 1, 8, 2, 3)]:
        with pytest.raises(ConfigError, match=r"BACKWARD_SHAPE must be \(channels, warps, splits, rows\[, lanes\]\)"):
            _with_backward_shape(base, bad)
    assert parse_backward_shape("4:1:8:2") == (4, 1, 8, 2) and parse_backward_shape("default") is None
    assert parse_backward_shape("4:1:8:2:2") == (4, 1, 8, 2, 2)
    for bad in ["4:1:8", "4:1:8:x", "4,1,8,2", "4:1:8:2:2:2"]:
        with pytest.raises(ConfigError, match="BLOCK_D:WARPS:SPLITS:ROWS"):
            parse_backward_shape(bad)
    with pytest.raises(ConfigError, match="BACKWARD_SHAPE must be"):
        parse_backward_shape("3:1:8:2")


# ---------------------------------------------------------------------------------------- CUDA


def _grads_vs(ours, expected_fn, ref, tol):
    """out and all gradients of the triton scan on `ours` against expected_fn on `ref`."""
    out = selective_scan_triton(**ours[0], delta_softplus=True, config=ours[1])
    expected = expected_fn(**ref, delta_softplus=True)
    w = torch.randn(expected.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    assert _rel(out.cpu(), expected.cpu()) < tol
    g = torch.autograd.grad((out * w.to(out)).sum(), [ours[0][k] for k in NAMES])
    g_ref = torch.autograd.grad((expected * w.to(expected)).sum(), [ref[k] for k in NAMES])
    for name, a, e in zip(NAMES, g, g_ref):
        assert _rel(a.cpu(), e.cpu()) < tol, (name, _rel(a.cpu(), e.cpu()))


WIDE = ScanConfig(fwd_block_d=64, fwd_rows=16, fwd_warps=1, bwd_block_d=4, bwd_rows=3, bwd_splits=3, bwd_warps=2)


@pytest.mark.parametrize("shape,config", [((2, 5, 7, 3), None), ((4, 64, 16, 16), None),
                                          ((4, 64, 16, 16), SPLIT), ((3, 40, 100, 16), None),
                                          ((40, 100, 8, 16), WIDE)],
                         ids=["odd", "mamba", "mamba-split", "long", "wide-forward-tiles"])
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_fp32_matches_float64_reference(shape, config):
    x = _x(*shape)
    ours = {k: v.float().cuda().requires_grad_() for k, v in x.items()}
    ref = {k: v.clone().requires_grad_() for k, v in x.items()}
    _grads_vs((ours, config), selective_scan_ref, ref, tol=5e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_float64():
    x = _x(3, 24, 16, 16)
    ours = {k: v.cuda().requires_grad_() for k, v in x.items()}
    ref = {k: v.clone().requires_grad_() for k, v in x.items()}
    _grads_vs((ours, None), selective_scan_ref, ref, tol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_matches_torch_scan_and_fused_kernel():
    """The Mamba network's shape (d_inner 512, L 16, N 16) in fp32 against the PyTorch scan
    and, where it runs, mamba_ssm's selective_scan_fn: forward and all gradients."""
    x = _x(64, 512, 16, 16, device="cuda", dtype=torch.float32)
    x["A"] = -torch.rand(512, 16, device="cuda") * 4 - 0.1
    ins = {k: v.clone().requires_grad_() for k, v in x.items()}
    refs = [selective_scan_torch]
    if fused_status()[0]:
        from flowstudy.models.ssm.fused import fused_selective_scan

        refs.append(fused_selective_scan)
    out = selective_scan_triton(**ins, delta_softplus=True)
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), [ins[k] for k in NAMES])
    for fn in refs:
        r_ins = {k: v.clone().requires_grad_() for k, v in x.items()}
        ref = fn(**r_ins, delta_softplus=True)
        torch.testing.assert_close(out, ref, rtol=6e-4, atol=2e-3)
        r_grads = torch.autograd.grad((ref * w).sum(), [r_ins[k] for k in NAMES])
        for name, a, e in zip(NAMES, grads, r_grads):
            torch.testing.assert_close(a, e, rtol=6e-4, atol=2e-3, msg=f"{fn.__name__}: {name}")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_bf16_inputs_round_once():
    x = _x(4, 64, 16, 16, device="cuda", dtype=torch.float32)
    low = {k: (v.bfloat16() if k in ("u", "delta", "B", "C", "z") else v) for k, v in x.items()}
    out = selective_scan_triton(**low, delta_softplus=True)
    up = selective_scan_triton(**{k: v.float() for k, v in low.items()}, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, up.bfloat16(), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("mode", ["separate", "merged"])
def test_cuda_mamba_network_triton_matches_torch(mode):
    from flowstudy.models.mamba_velocity import MambaVelocityNetwork

    torch.manual_seed(0)
    net = MambaVelocityNetwork(bidirectional=mode, backend="torch").cuda()
    torch.nn.init.normal_(net.output_proj.weight, std=0.05)
    x, t = torch.randn(64, 1024, device="cuda"), torch.rand(64, device="cuda")
    results = []
    for backend in ("torch", "triton"):
        net.set_backend(backend)
        out = net(x, t)
        results.append((out, torch.autograd.grad(out.square().mean(), list(net.parameters()))))
    (out_t, g_t), (out_k, g_k) = results
    torch.testing.assert_close(out_k, out_t, rtol=6e-4, atol=2e-3)
    for (name, _), a, e in zip(net.named_parameters(), g_k, g_t):
        torch.testing.assert_close(a, e, rtol=6e-4, atol=2e-3, msg=name)
