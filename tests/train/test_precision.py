"""Training precisions: fp32, tf32 (TF32 products on CUDA) and bf16 (autocast on CUDA)."""

from __future__ import annotations

import pytest
import torch

from flowstudy.errors import ConfigError
from flowstudy.train import Trainer
from flowstudy.checkpoint import load_checkpoint
from flowstudy.train.precision import TF32Matmuls, autocast_for, matmul_precision


@pytest.fixture
def fp32_flags():
    """Start from exact float32 products; whatever a test does, put the flags back."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_tf32_block_sets_and_restores_the_flags_and_nests(fp32_flags):
    scope = TF32Matmuls()
    with scope:
        assert _flags() == (True, True)
        with scope:  # one object, entered twice (as sampling's velocity enters it per evaluation)
            assert _flags() == (True, True)
        assert _flags() == (True, True)
    assert _flags() == (False, False)
    with pytest.raises(RuntimeError, match="inside"):
        with scope:
            raise RuntimeError("inside")
    assert _flags() == (False, False)  # restored on an exception too


def test_tf32_blocks_in_two_threads_restore_the_flags_when_the_last_ends(fp32_flags):
    """Runs trained in threads of one process (the study's threads executor) open their blocks in
    any order; the first to end must not switch TF32 off under the other."""
    import threading

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with TF32Matmuls():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second():
        a_in.wait(5)
        with TF32Matmuls():
            b_in.set()
            a_out.wait(5)
            seen["after the first ended"] = _flags()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["after the first ended"] == (True, True)
    assert _flags() == (False, False)


def test_tf32_applies_on_cuda_only(fp32_flags):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert isinstance(matmul_precision(cuda, "tf32"), TF32Matmuls)
    assert isinstance(autocast_for(cuda, "tf32"), TF32Matmuls)
    for device, precision in ((cpu, "tf32"), (cpu, "bf16"), (cuda, "fp32"), (cuda, "bf16")):
        with matmul_precision(device, precision):
            assert _flags() == (False, False), (device, precision)
    with autocast_for(cpu, "tf32"):
        assert _flags() == (False, False)


def test_precision_is_validated(tiny_config):
    with pytest.raises(ConfigError, match=r"precision must be one of fp32, tf32, bf16; got 'fp16'"):
        tiny_config(precision="fp16")


def test_tf32_run_on_cpu_is_the_fp32_run(tmp_path, tiny_config, fp32_flags):
    """The CPU always computes in float32: a tf32 run there is bit for bit the fp32 run."""
    for precision in ("fp32", "tf32"):
        Trainer(tiny_config(steps=12, val_every=6, precision=precision), tmp_path / precision, progress=False).fit()
    a, b = (load_checkpoint(tmp_path / p / "checkpoints/last.pt")["model"] for p in ("fp32", "tf32"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _flags() == (False, False)


class _Flags:
    """Trainer callback: the TF32 flag at each logged step."""

    def __init__(self):
        self.seen: list[bool] = []

    def on_step(self, trainer, step, loss):
        self.seen.append(torch.backends.cuda.matmul.allow_tf32)


@pytest.mark.gpu
@pytest.mark.parametrize("graph", [True, False])
def test_tf32_run_on_cuda_computes_in_tf32_and_restores(tmp_path, tiny_config, fp32_flags, graph):
    flags = _Flags()
    cfg = tiny_config(steps=40, val_every=20, device="cuda", precision="tf32", graph=graph, arch="mlp")
    Trainer(cfg, tmp_path / "tf32", callbacks=[flags], progress=False).fit()
    assert flags.seen and all(flags.seen)
    assert _flags() == (False, False)
    Trainer(tiny_config(steps=40, val_every=20, device="cuda", precision="fp32", graph=graph, arch="mlp"), tmp_path / "fp32", progress=False).fit()
    a, b = (load_checkpoint(tmp_path / p / "checkpoints/last.pt")["model"] for p in ("fp32", "tf32"))
    diffs = [float((a[k] - b[k]).abs().max()) for k in a]
    assert max(diffs) > 0  # TF32 products round differently ...
    assert max(diffs) < 5e-2  # ... and train to nearly the same weights over 40 steps
