"""Shared test configuration: GPU and slow markers, small thread count for the 2-core CI."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

# Up to 2 intra-op threads a test process; under pytest-xdist the cores are shared among its workers,
# so that two workers on 2 cores do not each start 2 threads and wait on each other.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_slow = pytest.mark.skip(reason="long test: set FLOWSTUDY_SLOW=1 to run")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and os.environ.get("FLOWSTUDY_SLOW") != "1":
            item.add_marker(skip_slow)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny tensors: a second thread only waits on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A 16-D two-cluster data set: DIR/train.npy (256 rows) and DIR/val.npy (64 rows)."""
    root = tmp_path_factory.mktemp("tiny-data")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 3
    for split, n in (("train", 256), ("val", 64)):
        x = centres[rng.integers(0, 2, n)] + 0.3 * rng.normal(size=(n, 16))
        np.save(root / f"{split}.npy", (0.01 * x + 0.05).astype(np.float32))
    return root


class _OldStyleTanh(torch.autograd.Function):
    """tanh with a hand-written backward and no setup_context, like mamba_ssm's fused scan:
    torch.func refuses it."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


@pytest.fixture(scope="session")
def old_style_tanh():
    """tanh through an autograd.Function that torch.func refuses (its ``apply``)."""
    return _OldStyleTanh.apply


@pytest.fixture(scope="session")
def interpreted():
    """interpreted(cases_file): run a file of Triton kernel cases in a child pytest with
    TRITON_INTERPRET=1 (it must be set before triton is imported, so it cannot be switched on in
    this process) and fail with its output unless every case passed."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("triton")
    root = Path(__file__).parents[1]

    def run(cases) -> None:
        env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", str(cases)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540, cwd=root)  # under the 600 s test limit: a loaded machine is slow, not wrong
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]

    return run
