"""CPU training-step time of every registered velocity network.

For each architecture preset: forward + backward of an MSE loss at batch 256, D = 1024,
on CPU with torch.set_num_threads(2) (the defaults), after warm-up steps; reports the
median (and minimum) of the timed repeats, the forward-only median, and the parameter
count. Prints a Markdown table and writes it to --out if given.

    python benchmarks/bench_models_cpu.py --out benchmarks/models_cpu.md
    python benchmarks/bench_models_cpu.py --archs mlp dit unet mamba --repeats 9
    python benchmarks/bench_models_cpu.py --params-only

Timings on a shared machine are only as good as its idleness: the load average before
and after the run is printed with the table; with several threads, an op waits for
every worker thread, so a busy machine slows multi-threaded runs badly.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flowstudy.models import REGISTRY, count_parameters, create_model, list_architectures  # noqa: E402
from timing import seconds  # noqa: E402  (benchmarks/)


@dataclass
class StepTiming:
    arch: str
    params: int
    step_median_s: float
    step_min_s: float
    forward_median_s: float


def preset_names() -> list[str]:
    """Registered names that are presets (the plain family names are aliases of -small)."""
    return [a for a in REGISTRY if a.rsplit("-", 1)[-1] in ("tiny", "small", "base")]


def _perturb(model: torch.nn.Module) -> None:
    """Make zero-initialised layers non-zero so backward does the work of a trained net."""
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(std=0.02)


def time_arch(arch: str, batch: int, dim: int, warmup: int, repeats: int) -> StepTiming:
    torch.manual_seed(0)
    model = create_model(arch, input_dim=dim)
    _perturb(model)
    x, t, target = torch.randn(batch, dim), torch.rand(batch), torch.randn(batch, dim)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x, t), target).backward()

    def forward() -> None:
        with torch.no_grad():
            model(x, t)

    steps = seconds(step, repeats=repeats, warmup=warmup, device="cpu")
    fwd = seconds(forward, repeats=repeats, warmup=1, device="cpu")
    return StepTiming(arch, count_parameters(model), statistics.median(steps), min(steps),
                      statistics.median(fwd))


def markdown(rows: list[StepTiming], header: str) -> str:
    lines = [header, "", "| architecture | parameters | fwd+bwd median (s) | fwd+bwd min (s) | forward median (s) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r.arch} | {r.params:,} | {r.step_median_s:.3f} | {r.step_min_s:.3f} | "
                     f"{r.forward_median_s:.3f} |")
    return "\n".join(lines) + "\n"


def params_table(dim: int) -> str:
    lines = [f"| architecture | class | parameters at D={dim} |", "| --- | --- | ---: |"]
    for arch in preset_names():
        model = create_model(arch, input_dim=dim)
        lines.append(f"| {arch} | {type(model).__name__} | {count_parameters(model):,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="*", default=None, help="default: every preset")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    parser.add_argument("--params-only", action="store_true", help="print parameter counts only")
    parser.add_argument("--quick", action="store_true", help="two tiny networks, small batch, 2 repeats: checks the script, not the speed")
    args = parser.parse_args(argv)
    if args.quick:
        args.archs, args.batch, args.dim, args.warmup, args.repeats = args.archs or ["mlp-tiny", "unet-tiny"], 8, 64, 1, 2

    if args.params_only:
        text = params_table(args.dim)
    else:
        archs = args.archs or preset_names()
        unknown = [a for a in archs if a not in REGISTRY]
        if unknown:
            parser.error(f"unknown architectures {unknown}; valid: {', '.join(list_architectures())}")
        torch.set_num_threads(args.threads)
        load_before = os.getloadavg()[0]
        rows = []
        for arch in archs:
            rows.append(time_arch(arch, args.batch, args.dim, args.warmup, args.repeats))
            print(f"{arch}: {rows[-1].step_median_s:.3f} s", file=sys.stderr, flush=True)
        load_after = os.getloadavg()[0]
        header = (
            f"CPU forward+backward (MSE loss) at batch {args.batch}, D={args.dim}, "
            f"{args.threads} threads, {args.warmup} warm-up steps, median of {args.repeats}. "
            f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, 1-min load average {load_before:.2f} before / {load_after:.2f} after."
        )
        text = markdown(rows, header)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
