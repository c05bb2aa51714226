"""Backend selection and errors of the Mamba layers (CPU side)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import flowstudy.models as models
from flowstudy.errors import ConfigError
from flowstudy.models import create_model, mamba_backends
from flowstudy.models.mamba_velocity import MambaVelocityNetwork
from flowstudy.models.ssm import MambaLayer, fused_status, resolve_backend

FUSED = fused_status()[0]


@pytest.mark.skipif(FUSED, reason="the fused backend is available here")
def test_fused_backend_unavailable_raises_import_error_with_howto():
    for build in (lambda: MambaLayer(32, backend="fused"),
                  lambda: MambaVelocityNetwork(backend="fused"),
                  lambda: create_model("mamba-tiny", backend="fused")):
        with pytest.raises(ImportError, match=r"pip install 'flowstudy\[mamba\]' on a CUDA machine"):
            build()


def test_unknown_backend_lists_valid_ones():
    with pytest.raises(ValueError, match="valid backends: auto, torch, fused, triton"):
        MambaLayer(32, backend="cuda")
    with pytest.raises(ConfigError, match="valid backends"):
        create_model("mamba", backend="cuda")


def test_chunk_size_must_divide_input_dim():
    with pytest.raises(ValueError, match="chunk_size must divide input_dim"):
        MambaVelocityNetwork(input_dim=1000, chunk_size=64)
    with pytest.raises(ConfigError, match="input_dim=1000, chunk_size=64"):
        create_model("mamba", input_dim=1000)


def test_unknown_bidirectional_mode():
    with pytest.raises(ValueError, match="valid: separate, tied, merged"):
        MambaVelocityNetwork(bidirectional="both")


def test_auto_resolves_to_torch_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"


def test_backends_report():
    report = mamba_backends()
    assert set(report) == {"torch", "fused", "triton"}
    assert report["torch"][0] is True
    available, reason = report["fused"]
    assert isinstance(available, bool) and isinstance(reason, str) and reason
    assert models.MAMBA_AVAILABLE is available
    from flowstudy.models.mamba_velocity import MAMBA_AVAILABLE

    assert MAMBA_AVAILABLE is available
    if not torch.cuda.is_available():
        assert reason == "CUDA is not available"


def test_torch_and_auto_backends_agree_on_cpu():
    torch.manual_seed(0)
    net = MambaVelocityNetwork(input_dim=128, chunk_size=16, hidden_dim=32, num_layers=1)
    torch.nn.init.normal_(net.output_proj.weight, std=0.1)
    x = torch.randn(4, 128)
    out_auto = net(x, 0.4)
    net.set_backend("torch")
    assert all(m.backend == "torch" for m in net.modules() if isinstance(m, MambaLayer))
    torch.testing.assert_close(net(x, 0.4), out_auto, rtol=0, atol=0)


def test_import_is_lazy():
    """Importing the models neither imports mamba_ssm nor initialises CUDA."""
    code = (
        "import sys, torch, flowstudy.models, flowstudy.models.mamba_velocity;"
        "assert 'mamba_ssm' not in sys.modules, 'mamba_ssm imported';"
        "assert not torch.cuda.is_initialized(), 'CUDA initialised'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_fused_path_layout_with_reference_kernel(monkeypatch):
    """The fused path's layout plumbing ([B, L, d] <-> [B, d, L], fp32 casts), checked on
    CPU by standing the PyTorch scan (same signature as mamba_ssm's selective_scan_fn)
    in for the CUDA kernel."""
    import flowstudy.models.ssm.branch as branch
    from flowstudy.models.ssm import selective_scan_torch

    monkeypatch.setattr(branch, "fused_selective_scan", selective_scan_torch)
    torch.manual_seed(0)
    layer = MambaLayer(24, d_state=4, d_conv=3)
    x, z = torch.randn(2, 7, 48, requires_grad=True), torch.randn(2, 7, 48)
    args = (layer.conv1d, layer.x_proj, layer.dt_proj, layer.A_log, layer.D)
    fused = branch.selective_ssm(x, z, *args, backend="fused")
    ref = branch.selective_ssm(x, z, *args, backend="torch")
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
    (g_fused,) = torch.autograd.grad(fused.square().sum(), x)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-5, atol=1e-6)


def test_auto_scans_switch_to_triton_for_vmap_only_where_fused_would_run(monkeypatch):
    from flowstudy.models.ssm import stacking
    from flowstudy.models.ssm.bimamba_layer import BiMambaLayer

    net = create_model("mamba-tiny", input_dim=16, chunk_size=4)
    merged = create_model("mamba-merged", input_dim=16, chunk_size=4, hidden_dim=8, num_layers=1)
    pinned = create_model("mamba-tiny", input_dim=16, chunk_size=4, backend="torch")
    cpu = torch.device("cpu")
    assert stacking.scans_for_vmap(net, cpu) == []  # "auto" runs the torch scan here: nothing to do
    monkeypatch.setattr(stacking, "resolve_backend", lambda name, device: "fused")  # as on a CUDA machine with mamba-ssm
    monkeypatch.setattr(stacking, "triton_status", lambda: (False, "no triton"))
    assert stacking.scans_for_vmap(net, cpu) == []  # no Triton: the fused scan stays, run member by member
    monkeypatch.setattr(stacking, "triton_status", lambda: (True, "test"))
    switched = stacking.scans_for_vmap(net, cpu)
    layers = [m for m in net.modules() if isinstance(m, MambaLayer)]
    assert len(switched) == len(layers) > 0
    assert all(m.backend == "triton" for m in layers)
    merged_layers = stacking.scans_for_vmap(merged, cpu)
    assert merged_layers and all(type(m) is BiMambaLayer and m.backend == "triton" for m in merged_layers)
    assert stacking.scans_for_vmap(pinned, cpu) == []  # a backend the user chose is kept
    assert all(m.backend == "torch" for m in pinned.modules() if isinstance(m, MambaLayer))
