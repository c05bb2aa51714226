"""Sampling, held-out NLL and training of subspace-residual runs in the base's eigenbasis against the plain field.

For each recipe's network on its subspace (MLP rank 128, U-Net, DiT and mamba-tiny rank 64), built
around the Gaussian fit of builtin:sonar-gsm8k-1k's training rows with weights drawn at random (the
speed does not depend on training), the script samples N rows with midpoint-25 (50 network
evaluations), alternating the two paths ``--repeats`` times in one process, and prints the median
seconds, the ratio and the largest difference between the two paths' samples.

    python benchmarks/bench_subspace_sampling.py                       # CPU, 1024 rows
    python benchmarks/bench_subspace_sampling.py --device cuda --rows 65536 --only mlp
    python benchmarks/bench_subspace_sampling.py --nll 100 --only mlp   # exact held-out NLL of 100 test rows instead:
                                                                        # factorised (k-dim ODE) against the whole state
    python benchmarks/bench_subspace_sampling.py --train 20            # training steps/s of each recipe (flowstudy.train.eigen_step):
                                                                        # data coordinates, eigen-coordinates, k leading ones
    python benchmarks/bench_subspace_sampling.py --fit 600 --only mlp  # whole runs both ways, 3 seeds: validation loss and seconds
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


def _alternate(fn, repeats: int, device: str, warmup: bool, keys=(True, False)) -> tuple[dict, dict]:
    """fn(key) for each key (the new path True, the old False), the order reversed every round;
    median seconds and the last output of each (the first round is not timed when ``warmup``)."""
    times, out = {key: [] for key in keys}, {}
    for i in range(repeats + int(warmup)):
        for new_path in keys if i % 2 == 0 else keys[::-1]:
            if device == "cuda":
                torch.cuda.synchronize()
            tic = time.perf_counter()
            out[new_path] = fn(new_path)
            if device == "cuda":
                torch.cuda.synchronize()
            if i or not warmup:
                times[new_path].append(time.perf_counter() - tic)
    return {k: statistics.median(v) for k, v in times.items()}, out


def _recipes(args):
    """(label, arch, rank, options) of the NETWORKS that --only keeps."""
    return [n for n in NETWORKS if not args.only or n[1] in args.only]


def _networks(args):
    for label, arch, rank, options in _recipes(args):
        yield label, _run(arch, rank, options, args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=None, help="arch names to run (default: all)")
    parser.add_argument("--nll", type=int, default=0, help="time the exact held-out NLL of this many test rows instead of sampling")
    parser.add_argument("--train", type=int, default=0, help="time this many training steps of each recipe instead of sampling")
    parser.add_argument("--fit", type=int, default=0, help="train each recipe this many steps both ways (3 seeds) and compare")
    args = parser.parse_args()
    if args.fit:
        return fit_main(args)
    if args.nll:
        return nll_main(args)
    if args.train:
        return train_main(args)
    print(f"device {args.device}; torch {torch.__version__}; threads {torch.get_num_threads()}; {args.rows} rows, midpoint-25")
    print("| network | plain field s | eigenbasis s | plain / eigenbasis | max abs difference |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, run in _networks(args):
        t, out = _alternate(
            lambda eigen: sample_standardized(run, args.rows, solver="midpoint", steps=25, batch_size=args.rows, eigenbasis=eigen)[0],
            args.repeats, args.device, warmup=True,
        )
        diff = float((out[True] - out[False]).abs().max())
        print(f"| {label} | {t[False]:.3f} | {t[True]:.3f} | {t[False] / t[True]:.2f}× | {diff:.1e} |", flush=True)


def nll_main(args) -> None:
    from flowstudy.metrics.likelihood import heldout_nll

    train = load_dataset("builtin:sonar-gsm8k-1k").embeddings
    test = load_dataset("builtin:sonar-gsm8k-1k:test").embeddings[: args.nll]
    print(f"device {args.device}; torch {torch.__version__}; threads {torch.get_num_threads()}; exact NLL of {len(test)} test rows, RK4-20")
    print("| network | whole state s | factorised s | whole / factorised | NLL difference (nats/dim) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, run in _networks(args):
        t, nll = _alternate(
            lambda factorised: heldout_nll(run, test, train, estimator="exact", factorised=factorised).model.nats_per_dim,
            args.repeats, args.device, warmup=False,
        )
        print(f"| {label} | {t[False]:.1f} | {t[True]:.1f} | {t[False] / t[True]:.2f}× | {abs(nll[True] - nll[False]):.1e} |", flush=True)


STEP_SPACES = {"data": dict(eigenbasis=False), "eigen": dict(leading=False), "leading": {}}
"""Trainer options of the three step spaces: data coordinates; eigen-coordinates, all D; the k leading ones."""


def train_main(args) -> None:
    """Steps/s of each recipe's Trainer (its step function: captured on CUDA) stepping in data
    coordinates, in the base's eigen-coordinates (all D) and in its k leading eigen-coordinates
    (flowstudy.train.eigen_step), built from the same seed."""
    import tempfile
    from pathlib import Path

    from flowstudy.train import Trainer
    from flowstudy.train.config import resolve_config
    from flowstudy.train.graph import make_train_step

    print(f"device {args.device}; torch {torch.__version__}; threads {torch.get_num_threads()}; {args.train} steps per timing, batch 256, the recipes")
    print("| recipe | data coordinates steps/s | eigen-coordinates, all D | k leading eigen-coordinates | eigen / data | leading / data | leading / eigen |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch, _, _ in _recipes(args):
            cfg = resolve_config(None, {"arch": arch, "device": args.device, "steps": args.train * (3 * args.repeats + 6), "val_every": 10**9})
            steps = {}
            for space, options in STEP_SPACES.items():
                trainer = Trainer(cfg, Path(tmp) / f"{arch}-{space}", progress=False, **options)
                trainer.setup(None)
                assert (trainer.space.rotation is not None) == (space != "data") and (trainer.space.loss_scale < 1) == (space == "leading")
                steps[space] = make_train_step(trainer, message=lambda _: None)
            t, _ = _alternate(lambda space: [steps[space]() for _ in range(args.train)][-1][0], args.repeats, args.device, warmup=True, keys=tuple(STEP_SPACES))
            rate = {space: args.train / t[space] for space in STEP_SPACES}
            print(
                f"| {label} | {rate['data']:.1f} | {rate['eigen']:.1f} | {rate['leading']:.1f} | {t['data'] / t['eigen']:.2f}× "
                f"| {t['data'] / t['leading']:.2f}× | {t['eigen'] / t['leading']:.2f}× |",
                flush=True,
            )


def fit_main(args) -> None:
    """Whole runs of each recipe, seeds 0-2, stepping in each step space (STEP_SPACES): the final
    validation loss (EMA weights, data coordinates) and the run's seconds. They differ only in
    their draws (equal in law), so the losses should agree within seed noise."""
    import statistics
    import tempfile
    from pathlib import Path

    from flowstudy.train import Trainer
    from flowstudy.train.config import resolve_config

    print(f"device {args.device}; torch {torch.__version__}; threads {torch.get_num_threads()}; {args.fit} steps, seeds 0-2")
    print("| recipe | steps in | validation loss (mean ± sd) | last logged training loss (mean) | seconds per run |")
    print("| --- | --- | ---: | ---: | ---: |")
    for label, arch, _, _ in _recipes(args):
        runs = {space: [] for space in STEP_SPACES}
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(3):
                for space, options in STEP_SPACES.items():
                    cfg = resolve_config(None, {"arch": arch, "device": args.device, "steps": args.fit, "val_every": max(1, args.fit // 3), "seed": seed})
                    result = Trainer(cfg, f"{tmp}/{arch}-{seed}-{space}", progress=False, **options).fit()
                    runs[space].append((result.last_val_loss, _last_train_loss(Path(tmp) / f"{arch}-{seed}-{space}"), result.seconds))
        for space in STEP_SPACES:
            losses, logged, seconds = zip(*runs[space])
            where = {"data": "data coordinates", "eigen": "eigen-coordinates, all D", "leading": "k leading eigen-coordinates"}[space]
            print(
                f"| {label} | {where} | {statistics.mean(losses):.4f} ± {statistics.stdev(losses):.4f} | {statistics.mean(logged):.4f} "
                f"| {statistics.mean(seconds):.1f} |",
                flush=True,
            )


def _last_train_loss(run_dir) -> float:
    """The mean of the last 100 logged training losses of a run (its metrics file)."""
    import json

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in rows if "loss" in r][-100:]
    return statistics.mean(losses)


if __name__ == "__main__":
    main()
