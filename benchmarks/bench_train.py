"""Training steps/s and sampling throughput per architecture: flowstudy vs a plain reference loop.

flowstudy's trainer holds the standardised data on the device (batches are index lookups),
uses fused AdamW on CUDA and keeps an EMA; on CUDA it is also timed with bf16 autocast. Each
architecture runs with its recipe's base field (the Mamba networks add the Gaussian base field: two
D x D matrix products per network evaluation, which the reference loop does not do). The reference
loop is what a typical script does:
a per-batch ``DataLoader`` over a CPU ``TensorDataset``, host-to-device copies, fp32, no EMA.
Sampling: samples/s at 50 NFE (Euler, 50 steps) through ``flowstudy.sampling`` vs a plain fp32
Euler loop.

    python benchmarks/bench_train.py --device cuda --steps 300 --out results/
    python benchmarks/bench_train.py --device cpu --steps 50 --sample-n 512 --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from flowstudy.data import Standardizer, load_dataset
from flowstudy.models import count_parameters, create_model
from flowstudy.train import TrainConfig, Trainer
from flowstudy.run import load_run
from flowstudy.train.config import recipe_for
from flowstudy.train.trainer import LOG_EVERY
from timing import StepClock, sync  # benchmarks/


def flowstudy_steps_per_s(arch: str, steps: int, batch: int, device: str, workdir: Path, precision: str) -> tuple[float, Path]:
    base_field = recipe_for(arch).get("base_field", "none")  # the recipe's, as a user's run would have it
    cfg = TrainConfig(arch=arch, steps=steps, batch_size=batch, val_every=10**9, device=device, seed=0, precision=precision, base_field=base_field).validate()
    clock = StepClock()
    run_dir = workdir / f"{arch}-{precision}"
    Trainer(cfg, run_dir, callbacks=[clock], progress=False).fit()
    if len(clock.marks) < 2:
        raise SystemExit(f"--steps {steps} is too short to time: the trainer reports every {LOG_EVERY} steps; use at least {2 * LOG_EVERY}")
    return clock.rate(), run_dir


def reference_steps_per_s(arch: str, steps: int, batch: int, device: torch.device, x: torch.Tensor) -> float:
    return plain_loop_rate(create_model(arch, input_dim=x.shape[1]).to(device), steps, batch, device, x)


def plain_loop_rate(model: torch.nn.Module, steps: int, batch: int, device: torch.device, x: torch.Tensor) -> float:
    """Steps/s of a typical script's loop (DataLoader, host-to-device copies, AdamW; steps 5.. timed)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = DataLoader(TensorDataset(x), batch_size=batch, shuffle=True, drop_last=True)
    done, start = 0, None
    while done < steps:
        for (x1,) in loader:
            x1 = x1.to(device)
            x0 = torch.randn_like(x1)
            t = torch.rand(x1.shape[0], device=device)
            xt = (1 - t[:, None]) * x0 + t[:, None] * x1
            loss = ((model(xt, t) - (x1 - x0)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == 5:  # warm-up excluded, as for flowstudy
                sync(device)
                start = time.perf_counter()
            if done >= steps:
                break
    sync(device)
    return (steps - 5) / (time.perf_counter() - start)


@torch.no_grad()
def sampling_rates(run_dir: Path, n: int, device: torch.device) -> tuple[float, float]:
    from flowstudy.sampling import sample_standardized

    run = load_run(run_dir, "last", device=device)
    sample_standardized(run, min(n, 256), solver="euler", steps=5)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    sample_standardized(run, n, solver="euler", steps=50, batch_size=n)
    sync(device)
    ours = n / (time.perf_counter() - t0)
    x = torch.randn(n, run.standardizer.dim, device=device)
    t0 = time.perf_counter()
    for k in range(50):  # plain fp32 Euler, 50 NFE
        x = x + run.model(x, torch.full((n,), k / 50, device=device)) / 50
    sync(device)
    return ours, n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sample-n", type=int, default=4096)
    parser.add_argument("--archs", nargs="+", default=["mlp", "dit", "unet", "mamba", "mamba-tied", "mamba-merged"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train = torch.from_numpy(load_dataset("builtin:sonar-gsm8k-1k").embeddings)
    x = Standardizer.fit(train).transform(train)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            ours, run_dir = flowstudy_steps_per_s(arch, args.steps, args.batch, args.device, Path(tmp), "fp32")
            ours_bf16 = flowstudy_steps_per_s(arch, args.steps, args.batch, args.device, Path(tmp), "bf16")[0] if device.type == "cuda" else float("nan")
            ref = reference_steps_per_s(arch, args.steps, args.batch, device, x)
            s_ours, s_ref = sampling_rates(run_dir, args.sample_n, device)
            params = count_parameters(create_model(arch))
            rows.append(dict(arch=arch, params=params, train_steps_per_s=ours, train_bf16_steps_per_s=ours_bf16, reference_steps_per_s=ref, sample_per_s=s_ours, reference_sample_per_s=s_ref))
            print(json.dumps(rows[-1]), flush=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    lines = [
        f"device: {name}; torch {torch.__version__}; batch {args.batch}; {args.steps} steps; sampling n={args.sample_n}, Euler 50 NFE",
        "",
        "| arch | params | flowstudy train steps/s (fp32) | flowstudy (bf16 autocast) | reference loop steps/s | flowstudy samples/s | reference samples/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['arch']} | {r['params']:,} | {r['train_steps_per_s']:.1f} | {r['train_bf16_steps_per_s']:.1f} | {r['reference_steps_per_s']:.1f} | {r['sample_per_s']:,.0f} | {r['reference_sample_per_s']:,.0f} |"
        for r in rows
    ]
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_train.md").write_text("\n".join(lines) + "\n")
        (args.out / "bench_train.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
