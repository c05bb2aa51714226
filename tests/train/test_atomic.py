"""An atomic write killed mid-way leaves the previous file intact and no partial target."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

WRITER = """
import sys, torch
from pathlib import Path
from flowstudy.io import atomic_torch_save
big = {"w": torch.randn(4_000_000)}
print("ready", flush=True)
while True:
    atomic_torch_save(big, Path(sys.argv[1]))
"""


def test_kill_during_checkpoint_write_keeps_a_loadable_file(tmp_path):
    target = tmp_path / "last.pt"
    torch.save({"w": torch.arange(3.0)}, target)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.4)  # well inside one of the repeated ~16 MB writes
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(target, weights_only=True)
    assert set(state) == {"w"} and state["w"].numel() in (3, 4_000_000)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert all(name.endswith(".tmp") for name in leftovers)  # at most an orphaned temp file
