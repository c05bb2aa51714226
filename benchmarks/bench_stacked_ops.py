"""Ops per stacked group step, per-member against vectorised draws: a CPU proxy for GPU kernel counts.

On a GPU a captured group step costs a few microseconds per kernel however small, so the number
of ops dispatched per group step bounds it. This counts the aten ops of one eager group step
(``StackedGroup.step``: draws, gathers, forward, loss, backward, clipping, AdamW, EMA) with a
``TorchDispatchMode``, for K = 1, 8, 64 members and both ways of drawing
(``flowstudy.train.stacked``): "ops" counts every op, "kernels" leaves out views (no kernel), and
"draw + loss" counts the ops of the losses alone (data side and forward, no backward). It also
times, in process CPU seconds on one thread, the group step and the host work before it (new
epochs: a loop over members' batchers, or one vectorised check; on the CPU this includes drawing
the permutations, which on a GPU are kernels), and counts the ops of that host part. Run with PYTHONPATH at an older
tree's ``src`` it measures that tree's per-member step (ops and step time).

    python benchmarks/bench_stacked_ops.py                     # K = 1, 8, 64; mlp-tiny on 64-D rows
    python benchmarks/bench_stacked_ops.py --members 1 8 --dim 1024 --arch mlp
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from flowstudy.train import TrainConfig
from flowstudy.train.stacked import StackedGroup


class OpCounter(TorchDispatchMode):
    """Counts aten ops dispatched inside the block: all, and those that are not views."""

    def __init__(self):
        super().__init__()
        self.ops, self.kernels = 0, 0
        self.names: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        if not func.is_view:
            self.kernels += 1
            self.names[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def make_data(folder: Path, rows: int, dim: int) -> str:
    """A Gaussian mixture of ``rows`` training and 200 validation rows in ``dim`` dimensions."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, dim)) * 2
    for split, n in (("train", rows), ("val", 200)):
        x = centres[rng.integers(0, 8, n)] + rng.normal(size=(n, dim))
        np.save(folder / f"{split}.npy", x.astype(np.float32))
    return f"{folder}:train"


def build(data: str, arch: str, members: int, vectorise: bool, batch: int, folder: Path) -> StackedGroup:
    configs = [
        TrainConfig(
            data=data, arch=arch, steps=10**4, batch_size=batch, val_every=10**9, device="cpu", seed=s, aug=["noise:0.4"], lr=1e-3 * (1 + s % 3)
        ).validate()
        for s in range(members)
    ]
    dirs = [folder / f"{'v' if vectorise else 'm'}{members}-{s}" for s in range(members)]
    try:
        group = StackedGroup(configs, dirs, vectorise=vectorise, capture=False)
    except TypeError:  # a tree from before the vectorised step: its per-member step only
        group = StackedGroup(configs, dirs, capture=False)
        group.step_kind = "per-member (before)"
    group.prepare([False] * members)
    return group


def measure(group: StackedGroup, steps: int) -> dict:
    for _ in range(2):  # lazy state (vmap's first call, allocator)
        group.step(None)
    counter = OpCounter()
    with counter:
        group.step(None)
    if not hasattr(group, "_advance_epochs"):  # before: the host loop and the body in one step
        tic = time.process_time()
        for _ in range(steps):
            group.step(None)
        step = (time.process_time() - tic) / steps
        return {"ops": counter.ops, "kernels": counter.kernels, "loss_kernels": math.nan, "host_ops": math.nan, "host_ms": math.nan, "step_ms": 1e3 * step}
    loss_counter = OpCounter()
    group._advance_epochs()
    with torch.no_grad(), loss_counter:
        group._member_losses() if group.batches is None else group._group_losses()
    host = step = 0.0
    host_counter = OpCounter()
    for _ in range(steps):  # StackedGroup.step without a graph, its two parts timed apart
        tic = time.process_time()
        with host_counter:
            group._advance_epochs()
        toc = time.process_time()
        getattr(group, "_zero_grad", lambda: None)()  # trees before the flat weights (their step accumulated into .grad)
        group._body()
        host, step = host + (toc - tic) / steps, step + (time.process_time() - tic) / steps
    return {
        "ops": counter.ops, "kernels": counter.kernels, "loss_kernels": loss_counter.kernels,
        "host_ops": host_counter.ops / steps, "host_ms": 1e3 * host, "step_ms": 1e3 * step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--arch", default="mlp-tiny")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6, help="timed group steps per row (a multiple of 3: whole epochs of 800 rows)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.arch}, D = {args.dim}, {args.rows} rows, batch {args.batch}, noise augmentation; torch {torch.__version__}, 1 thread")
    print("| K | step | ops / group step | kernels (non-view ops) | kernels in draws + loss | host: ops / step | host: CPU ms / step | CPU ms / group step |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp), args.rows, args.dim)
        for k in args.members:
            for vectorise in (False, True) if hasattr(StackedGroup, "_advance_epochs") else (False,):
                group = build(data, args.arch, k, vectorise, args.batch, Path(tmp))
                r = measure(group, args.steps)
                cells = [f"{r['ops']:,}", f"{r['kernels']:,}", f"{r['loss_kernels']:,}", f"{r['host_ops']:.1f}", f"{r['host_ms']:.3f}", f"{r['step_ms']:.1f}"]
                print(f"| {k} | {group.step_kind} | " + " | ".join(cells).replace("nan", "—") + " |", flush=True)
                del group


if __name__ == "__main__":
    main()
