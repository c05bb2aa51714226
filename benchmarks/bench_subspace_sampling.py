"""Sampling a subspace-residual run in its base's eigenbasis against the plain field, side by side.

For each recipe's network on its subspace (MLP rank 128, U-Net, DiT and mamba-tiny rank 64), built
around the Gaussian fit of builtin:sonar-gsm8k-1k's training rows with weights drawn at random (the
speed does not depend on training), the script samples N rows with midpoint-25 (50 network
evaluations), alternating the two paths ``--repeats`` times in one process, and prints the median
seconds, the ratio and the largest difference between the two paths' samples.

    python benchmarks/bench_subspace_sampling.py                       # CPU, 1024 rows
    python benchmarks/bench_subspace_sampling.py --device cuda --rows 65536 --only mlp
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch

from flowstudy.data import Standardizer, load_dataset
from flowstudy.flows.gaussian_base import GaussianBaseField
from flowstudy.flows.paths import Straight
from flowstudy.flows.subspace import SubspaceResidual
from flowstudy.models import create_model
from flowstudy.sampling import sample_standardized

# (label, arch, rank, model options): the recipes' networks (flowstudy.train.config.RECIPES)
NETWORKS = [
    ("mlp (rank 128)", "mlp", 128, {}),
    ("unet (rank 64)", "unet", 64, {}),
    ("dit (rank 64)", "dit", 64, {"chunk_size": 8}),
    ("mamba-tiny (rank 64)", "mamba-tiny", 64, {"chunk_size": 8}),
]


def _run(arch: str, rank: int, options: dict, device: str) -> SimpleNamespace:
    train = torch.from_numpy(load_dataset("builtin:sonar-gsm8k-1k").embeddings).double()
    std = Standardizer.fit(train)
    base = GaussianBaseField.fit(std.transform(train), Straight())
    torch.manual_seed(0)
    net = create_model(arch, input_dim=rank, **options)
    for p in net.parameters():  # the output layers start at zero: give the residual something to do
        p.data.normal_(0.0, 0.02)
    model = SubspaceResidual.around(net, base, rank).to(device).eval()
    return SimpleNamespace(model=model, standardizer=std, config={"precision": "fp32"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=None, help="arch names to run (default: all)")
    args = parser.parse_args()
    print(f"device {args.device}; torch {torch.__version__}; threads {torch.get_num_threads()}; {args.rows} rows, midpoint-25")
    print("| network | plain field s | eigenbasis s | plain / eigenbasis | max abs difference |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, arch, rank, options in NETWORKS:
        if args.only and arch not in args.only:
            continue
        run = _run(arch, rank, options, args.device)
        times = {True: [], False: []}
        out = {}
        for i in range(args.repeats + 1):  # the first round warms up
            for eigen in (True, False) if i % 2 == 0 else (False, True):
                if args.device == "cuda":
                    torch.cuda.synchronize()
                tic = time.perf_counter()
                out[eigen], _ = sample_standardized(run, args.rows, solver="midpoint", steps=25, batch_size=args.rows, eigenbasis=eigen)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                if i:
                    times[eigen].append(time.perf_counter() - tic)
        plain, fast = statistics.median(times[False]), statistics.median(times[True])
        diff = float((out[True] - out[False]).abs().max())
        print(f"| {label} | {plain:.3f} | {fast:.3f} | {plain / fast:.2f}× | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
