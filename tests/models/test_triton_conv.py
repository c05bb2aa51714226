"""The Triton causal convolution + SiLU: its kernels in Triton's interpreter (a child process, see
triton_conv_interp_cases.py), argument checks on CPU, and on CUDA against the PyTorch path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flowstudy.errors import ConfigError
from flowstudy.models.ssm.branch import causal_conv_blc

pytest.importorskip("triton")
from flowstudy.models.ssm.triton_conv import causal_conv_silu_triton  # noqa: E402


def test_interpreter_cases(interpreted):
    """Forward and gradients against torch's float64 Conv1d in Triton's interpreter (a child
    process: see triton_conv_interp_cases.py)."""
    interpreted(Path(__file__).parent / "triton_conv_interp_cases.py")


def test_rejects_long_sequences_and_bad_shapes():
    w = torch.randn(4, 3)
    with pytest.raises(ConfigError, match="at most 128 steps; got L=129"):
        causal_conv_silu_triton(torch.randn(1, 129, 4), w)
    with pytest.raises(ValueError, match=r"expects x \[B, L, d\] and weight \[d, k\]"):
        causal_conv_silu_triton(torch.randn(1, 8, 5), w)
    with pytest.raises(ValueError, match=r"bias must have shape \[4\]; got \[3\]"):
        causal_conv_silu_triton(torch.randn(1, 8, 4), w, torch.zeros(3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("shape", [(256, 8, 512, 4), (7, 13, 70, 3)])
def test_matches_the_pytorch_path_on_gpu(shape):
    batch, L, d, k = shape
    g = torch.Generator("cuda").manual_seed(0)
    x = torch.randn(batch, L, d, device="cuda", generator=g, requires_grad=True)
    w = (torch.randn(d, 1, k, device="cuda", generator=g) * 0.5).requires_grad_()
    b = (torch.randn(d, device="cuda", generator=g) * 0.3).requires_grad_()
    ref_in = [t.detach().double().requires_grad_() for t in (x, w, b)]
    out = causal_conv_silu_triton(x, w, b)
    ref = F.silu(causal_conv_blc(*ref_in))
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    cot = torch.randn(out.shape, device="cuda", generator=g)
    for ours, theirs in zip(torch.autograd.grad((out * cot).sum(), (x, w, b)), torch.autograd.grad((ref * cot.double()).sum(), ref_in)):
        torch.testing.assert_close(ours.double(), theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_mamba_network_with_the_triton_kernels_matches_eager_on_gpu():
    """Fast sampling compiles the velocity (GraphSolver(compile=...)): torch.compile must trace the
    fused convolution's and the scan's Triton launches, or fall back, to the eager numbers."""
    from flowstudy.models import create_model

    torch.manual_seed(0)
    net = create_model("mamba", input_dim=64, chunk_size=8, backend="triton").cuda().eval()
    x, t = torch.randn(32, 64, device="cuda"), torch.rand(32, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(net)(x, t), net(x, t), rtol=1e-4, atol=1e-5)
