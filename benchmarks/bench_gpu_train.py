"""GPU training and sampling side by side: plain loop, eager trainer, captured trainer, stacked groups.

One process, one GPU, two tables. Every row trains the architecture's recipe as a user's
``flowstudy train --arch ARCH`` run does (flowstudy.train.config.RECIPES: a residual network on the
top principal subspace of the Gaussian fit, the base field around it), at batch 256 on
builtin:sonar-gsm8k-1k:
    plain loop      a typical script: DataLoader over a CPU TensorDataset, host-to-device copies,
                    AdamW, fp32, no EMA or clipping (steps 5.. timed; the network alone is timed
                    first and last in its row, and its ratios use the mean), of the network alone in the
                    whole space (create_model(arch, input_dim=D): the issue's baseline) and of the
                    recipe's field (base + subspace residual, in data coordinates: the same model)
    eager trainer   flowstudy's Trainer with graph=False (data on the device, fused AdamW, EMA,
                    clipping; the step in the base's eigen-coordinates, flowstudy.train.eigen_step)
    captured        flowstudy's Trainer with graph=True: one CUDA graph per step (flowstudy.train.graph)
    compiled        the same with the step's field compiled first (TrainConfig.compile, --compile-step)
    stacked         K runs (seeds) as one StackedGroup, captured: model-steps/s = K x group steps/s;
                    --stacked-step picks the group's draws: vectorised (the default for seeds of one
                    configuration), per-member (each member's own generator), or both side by side
The flowstudy columns train in --precision (fp32, tf32 or bf16); the plain loops always in fp32.
And samples/s at 50 NFE (Euler, 50 steps) of the trained run: the eager solver of the plain field
against the graph-replayed one (flowstudy.graph_solver), in fp32 and with bf16 autocast inside the
network, with --compile-velocity MODE also the bf16 velocity compiled by torch.compile inside the
graph, and the same three in the base's eigenbasis as flowstudy samples subspace runs (only the k
network coordinates integrated, flowstudy.flows.subspace.EigenbasisFlow; rotations included).

    python benchmarks/bench_gpu_train.py --out results/          # all networks
    python benchmarks/bench_gpu_train.py --quick                 # a short check of every path
    python benchmarks/bench_gpu_train.py --only mlp --columns stacked --stacked-step both   # the stacked row alone
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import bench_train  # benchmarks/: the plain loop
import torch
from result_rows import error_text, keep  # benchmarks/
from timing import StepClock, sync

from flowstudy.data import Standardizer, load_dataset
from flowstudy.flows.subspace import EigenbasisFlow
from flowstudy.graph_solver import COMPILE_MODES, GraphSolver
from flowstudy.models import create_model
from flowstudy.sampling import velocity_of
from flowstudy.solvers import solve
from flowstudy.train import TrainConfig, Trainer
from flowstudy.run import load_run
from flowstudy.train.config import resolve_config
from flowstudy.train.stacked import StackedGroup

# (row label, arch, model overrides)
NETWORKS = [
    ("mlp", "mlp", {}),
    ("unet", "unet", {}),
    ("dit", "dit", {}),
    ("mamba (torch scan)", "mamba", {"backend": "torch"}),
    ("mamba (triton scan)", "mamba", {"backend": "triton"}),
]


DEVICE = "cuda"


PRECISION = "fp32"
"""The flowstudy columns' TrainConfig.precision (--precision); the plain loops are always fp32."""


def _config(arch: str, model: dict, steps: int, batch: int, **extra) -> TrainConfig:
    """The architecture's recipe at this length and batch, as a user's run resolves it."""
    values = dict(arch=arch, model=model, steps=steps, batch_size=batch, val_every=10**9, device=DEVICE, precision=PRECISION)
    return resolve_config(None, {**values, **extra})


def trainer_rate(arch, model, steps, batch, graph: bool, workdir: Path, compile: str | None = None) -> tuple[float, Path]:
    """Steps/s between the first and last logged step (setup, compile and capture excluded)."""
    clock, run_dir = StepClock(), workdir / f"{arch}-{model.get('backend', '')}-{graph}-{compile}"
    Trainer(_config(arch, model, steps, batch, graph=graph, compile=compile), run_dir, callbacks=[clock], progress=False).fit()
    return clock.rate(), run_dir


def plain_loop_rate(arch, model, steps, batch, x: torch.Tensor, workdir: Path, recipe: bool) -> float:
    """The plain loop of the network alone in the whole space, or (``recipe``) of the recipe's
    field in data coordinates, built by a Trainer from the same configuration."""
    if recipe:
        trainer = Trainer(_config(arch, model, steps, batch), workdir / f"plain-{arch}-{model.get('backend', '')}", progress=False)
        trainer.setup(None)
        field = trainer.field
    else:
        field = create_model(arch, input_dim=x.shape[1], **model).to(DEVICE)
    return bench_train.plain_loop_rate(field, steps, batch, torch.device(DEVICE), x)


def stacked_rate(arch, model, steps, batch, members: int, workdir: Path, vectorise: bool | None = None) -> tuple[float, str]:
    """Model-steps/s of ``members`` seeds trained as one captured group, between its first and last
    loss records (setup, capture and the final validation, skipped here, excluded), and the group's
    step kind."""
    configs = [_config(arch, model, steps, batch, seed=s) for s in range(members)]
    name = f"group-{arch}-{model.get('backend', '')}-{vectorise}"
    group = StackedGroup(configs, [workdir / f"{name}-{s}" for s in range(members)], vectorise=vectorise)
    for member in group.members:  # the final validation and checkpoints (2 x 64 files) are outside the timed window
        member.validate_and_save = lambda trackers: False
    group.fit()
    (s0, t0), (s1, t1) = group.marks[0], group.marks[-1]
    return members * (s1 - s0) / (t1 - t0), group.step_kind + ("" if group.vmapped else ", networks one by one")


COLUMNS = ("plain", "eager", "captured", "compiled", "stacked", "sampling")
STACKED_STEPS = {"auto": [None], "vectorised": [True], "per-member": [False], "both": [True, False]}
"""--stacked-step -> StackedGroup's ``vectorise`` per measured group."""


@torch.no_grad()
def sampling_rates(run_dir: Path, n: int, repeats: int, compile_mode: str | None = None) -> dict[str, float]:
    device = torch.device(DEVICE)
    run = load_run(run_dir, "last", device=device)
    out = {}
    x = torch.randn(n, run.standardizer.dim, device=device)
    velocity = velocity_of(run, device, "fp32")
    solve(velocity, x, 0.0, 1.0, method="euler", steps=2)
    sync(DEVICE)
    tic = time.perf_counter()
    solve(velocity, x, 0.0, 1.0, method="euler", steps=50)
    sync(DEVICE)
    out["eager_fp32"] = n / (time.perf_counter() - tic)
    variants = [("fp32", None), ("bf16", None)] + ([("bf16", compile_mode)] if compile_mode else [])
    flow = EigenbasisFlow.of(run.model)
    for eigen in (False, True) if flow is not None else (False,):
        for precision, mode in variants:
            field = flow.subspace_velocity if eigen else None
            solver = GraphSolver(velocity_of(run, device, precision, field), n, flow.k if eigen else x.shape[1], device=device, method="euler", steps=50, compile=mode)
            complement = flow.complement_map("euler", 50) if eigen else None
            draw = (lambda: flow.from_eigen(flow.solve(flow.to_eigen(x), solver, complement))) if eigen else (lambda: solver(x))
            draw()  # compiled (when asked) and captured before the clock starts
            sync(DEVICE)
            tic = time.perf_counter()
            for _ in range(repeats):
                draw()
            sync(DEVICE)
            out[("eigen_" if eigen else "") + f"graph_{precision}" + ("_compiled" if mode else "")] = n * repeats / (time.perf_counter() - tic)
            del solver
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="few steps: checks every path, numbers are rough")
    parser.add_argument("--members", type=int, default=64, help="stacked group size for the MLP (others: a quarter)")
    parser.add_argument("--only", nargs="*", default=None, help="row labels to run (default: all)")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to smoke-test this script")
    parser.add_argument("--columns", nargs="*", choices=COLUMNS, default=list(COLUMNS), help="what to measure (sampling needs captured)")
    parser.add_argument(
        "--stacked-step", choices=list(STACKED_STEPS), default="auto", help="the stacked group's draws: vectorised, per-member, both, or the group's default"
    )
    parser.add_argument(
        "--compile-velocity", choices=COMPILE_MODES, default=None, help="also sample with the velocity torch.compile'd in this mode (bf16)"
    )
    parser.add_argument("--sample-rows", type=int, default=None, help="rows per sampling batch (default: by network)")
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="fp32", help="the trainer's and groups' TrainConfig.precision")
    parser.add_argument(
        "--compile-step", choices=COMPILE_MODES, default="default", help="the compiled column: the captured trainer with TrainConfig.compile = MODE"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    global DEVICE, PRECISION
    DEVICE, PRECISION = args.device, args.precision
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 as the trainer runs it
    train = torch.from_numpy(load_dataset("builtin:sonar-gsm8k-1k").embeddings)
    x = Standardizer.fit(train).transform(train).float()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch, model in NETWORKS:
            if args.only and label not in args.only:
                continue
            slow = arch.startswith("mamba")
            steps = (50 if DEVICE == "cuda" else 30) if args.quick else (150 if slow else 400)
            row = {"network": label}
            try:
                if "plain" in args.columns:  # the baseline moves by ~25 % between calls: timed before and after the others
                    row["plain_runs"] = [plain_loop_rate(arch, model, max(30, steps // 2), args.batch, x, Path(tmp), recipe=False)]
                    row["plain"] = row["plain_runs"][0]
                    row["plain_recipe"] = plain_loop_rate(arch, model, max(30, steps // 2), args.batch, x, Path(tmp), recipe=True)
                if "eager" in args.columns:
                    row["eager"], _ = trainer_rate(arch, model, steps, args.batch, False, Path(tmp))
                if "captured" in args.columns or "sampling" in args.columns:
                    row["captured"], run_dir = trainer_rate(arch, model, steps, args.batch, True, Path(tmp))
                if "compiled" in args.columns:
                    row["compiled"], _ = trainer_rate(arch, model, steps, args.batch, True, Path(tmp), compile=args.compile_step)
                if "stacked" in args.columns:
                    members = args.members if arch == "mlp" else max(2, args.members // 4)
                    row["stacked_members"] = members
                    for vectorise in STACKED_STEPS[args.stacked_step]:
                        rate, kind = stacked_rate(arch, model, steps if not slow else 50, args.batch, members, Path(tmp), vectorise)
                        row[f"stacked_model_steps_{kind}"] = rate
                if "sampling" in args.columns:
                    n = (2048 if slow else 65536 if arch in ("mlp", "unet") else 8192) if not args.quick else (4096 if DEVICE == "cuda" else 64)
                    n = args.sample_rows or n
                    row.update({f"samples_{k}": v for k, v in sampling_rates(run_dir, n, 2 if args.quick or slow else 5, args.compile_velocity).items()})
                    row["sample_n"] = n
                if "plain" in args.columns:
                    row["plain_runs"].append(plain_loop_rate(arch, model, max(30, steps // 2), args.batch, x, Path(tmp), recipe=False))
                    row["plain"] = sum(row["plain_runs"]) / 2  # the ratios' baseline: the mean of the two
            except Exception as err:  # one network's failure must not lose the others' numbers
                row["error"] = error_text(err)
            keep(rows, row, args.out, "bench_gpu_train.json")  # rows so far survive a timeout
    lines = table(rows, args)
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_gpu_train.md").write_text("\n".join(lines) + "\n")
        (args.out / "bench_gpu_train.json").write_text(json.dumps(rows, indent=2))


def _runs(r: dict) -> str:
    """The plain loop's two timings, when both ran: " (a, b)"."""
    runs = r.get("plain_runs", [])
    return f" ({runs[0]:.1f}, {runs[1]:.1f})" if len(runs) == 2 else ""


def table(rows: list[dict], args) -> list[str]:
    import triton

    device = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (smoke test)"
    f = lambda r, k, spec=",.0f": format(r[k], spec) if k in r else "—"  # noqa: E731
    ratio = lambda r, a, b: f"{r[a] / r[b]:.1f}×" if a in r and b in r else "—"  # noqa: E731
    lines = [
        f"device: {device}; torch {torch.__version__}; triton {triton.__version__}; batch {args.batch}; the recipes trained in {args.precision} "
        f"(plain loops: fp32); compiled: TrainConfig.compile = {args.compile_step!r}",
        "",
        "| network | plain loop, network alone | plain loop, recipe field | eager trainer | captured trainer | captured, compiled "
        "| captured / plain (alone) | compiled / plain (alone) | captured / plain (recipe) | stacked model-steps/s (K, draws) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        kinds = [k.removeprefix("stacked_model_steps_") for k in r if k.startswith("stacked_model_steps_")]
        stacked = "; ".join(f"{f(r, f'stacked_model_steps_{k}')} ({r['stacked_members']}, {k})" for k in kinds) or "—"
        lines.append(
            f"| {r['network']} | {f(r, 'plain', '.1f')}{_runs(r)} | {f(r, 'plain_recipe', '.1f')} | {f(r, 'eager', '.1f')} | {f(r, 'captured', '.1f')} "
            f"| {f(r, 'compiled', '.1f')} | {ratio(r, 'captured', 'plain')} | {ratio(r, 'compiled', 'plain')} | {ratio(r, 'captured', 'plain_recipe')} | {stacked} |" + (f" error: {r['error']}" if "error" in r else "")
        )
    lines += [
        "",
        "samples/s at 50 NFE (Euler), plain field and in the base's eigenbasis:",
        "",
        "| network | rows | eager fp32 | graph fp32 | graph bf16 | graph bf16 compiled | eigenbasis graph fp32 | eigenbasis bf16 | eigenbasis bf16 compiled |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "sample_n" in r:
            keys = ["eager_fp32", "graph_fp32", "graph_bf16", "graph_bf16_compiled", "eigen_graph_fp32", "eigen_graph_bf16", "eigen_graph_bf16_compiled"]
            lines.append(f"| {r['network']} | {r['sample_n']} | " + " | ".join(f(r, f"samples_{k}") for k in keys) + " |")
    return lines


if __name__ == "__main__":
    main()
