"""The benchmark scripts still run: each imports (without running), and the scripts with a
``--quick`` mode run it on the CPU. GPU-only scripts are imported and their run is skipped."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py"))

GPU_ONLY = {
    "bench_scan.py": "times the Triton scan and compiles its kernels for sm_90: needs CUDA",
    "bench_mamba_gpu.py": "compares mamba_ssm's fused CUDA kernels: needs CUDA",
}
"""Scripts whose --quick mode (or whole run) needs a GPU, with the reason."""

QUICK_ARGS = {"bench_gpu_train.py": ["--device", "cpu", "--only", "mlp", "--columns", "eager"]}
"""Arguments beside --quick that keep a CPU smoke run to seconds."""


def _quick(path: Path) -> bool:
    return '"--quick"' in path.read_text()


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_script_imports_without_running(path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)  # a script that ran its main here would parse pytest's argv and fail
    assert module.__doc__, f"{path.name} says what it measures"


@pytest.mark.parametrize("path", [p for p in SCRIPTS if _quick(p)], ids=lambda p: p.name)
def test_quick_mode_runs_on_cpu(path, tmp_path):
    if path.name in GPU_ONLY:
        pytest.skip(GPU_ONLY[path.name])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCHMARKS.parent / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    args = [sys.executable, str(path), "--quick", *QUICK_ARGS.get(path.name, [])]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "a quick run prints its table"
