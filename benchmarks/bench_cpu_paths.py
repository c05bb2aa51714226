"""CPU time of one training step and of one 50-NFE sampling batch, for side-by-side runs of two trees.

Process CPU time (``time.process_time``, one thread) rather than wall time, so that other work on
a shared machine moves the figures less. Run it against two checkouts, alternating:

    PYTHONPATH=OLD/src python benchmarks/bench_cpu_paths.py mlp unet
    PYTHONPATH=NEW/src python benchmarks/bench_cpu_paths.py mlp unet
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from flowstudy.sampling import sample_standardized
from flowstudy.train import TrainConfig, Trainer


from flowstudy.run import load_run


def cpu_seconds(arch: str, steps: int = 20) -> tuple[float, float]:
    """(CPU s per training step at batch 256, CPU s to sample 256 rows with Euler 50)."""
    folder = tempfile.mkdtemp()
    cfg = TrainConfig(arch=arch, steps=steps + 3, batch_size=256, val_every=10**6, device="cpu", aug=["noise:0.3"]).validate()
    trainer = Trainer(cfg, f"{folder}/run", progress=False)
    trainer.fit()  # the trainer's loop as a user runs it; timed below step by step
    trainer.setup(None)
    for _ in range(3):
        trainer.train_step()
    tic = time.process_time()
    for _ in range(steps):
        trainer.train_step()
    step = (time.process_time() - tic) / steps
    run = load_run(f"{folder}/run", device="cpu")
    sample_standardized(run, 64, solver="euler", steps=2)
    tic = time.process_time()
    sample_standardized(run, 256, solver="euler", steps=50)  # named: the default solver has changed (midpoint)
    return step, time.process_time() - tic


if __name__ == "__main__":
    torch.set_num_threads(1)
    for arch in sys.argv[1:] or ["mlp"]:
        step, sample = cpu_seconds(arch)
        print(f"{arch}: {step * 1000:.1f} ms CPU per training step; {sample:.3f} s CPU per 256 samples at 50 NFE", flush=True)
