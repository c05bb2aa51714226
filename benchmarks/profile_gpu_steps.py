"""Where a captured training step spends its time on the GPU, and what precision and compile buy.

For each case (a recipe's single run, or a stacked group of K seeds) this builds the step exactly as
``flowstudy train`` / the study runner does (Trainer + CapturedStep, or StackedGroup with its
graph), replays it, and reports
    model-steps/s     K x replays per second (wall, after warm-up; one process, one GPU)
    GPU busy          summed kernel time per replay (torch.profiler), against the wall time per replay:
                      a ratio well under 1 means the replay is bound by launching its kernels
    kernels/step      kernels per replay
    top kernels       the kernels that take the most GPU time (with --top N)
Precision per case: fp32, tf32 (TF32 products, TrainConfig.precision = "tf32") or bf16 autocast;
``--coordinates leading all``: the subspace recipes' steps on their k leading eigen-coordinates
(the default) and on all D, side by side.
``--compile MODE`` also times single runs whose step field is torch.compile'd (static shapes)
before capture: fewer, fused kernels per replay.

    python benchmarks/profile_gpu_steps.py --cases "mlp:1" "mlp:64" "mamba:9:triton" --precision fp32 tf32 --top 12
    python benchmarks/profile_gpu_steps.py --cases "unet:1" --compile default
    python benchmarks/profile_gpu_steps.py --cases "mamba:9:triton" --precision tf32 --scan-bwd default 4:1:8:4 2:2:8:4

``--scan-bwd BLOCK_D:WARPS:SPLITS:ROWS[:LANES]`` replaces the Triton scan's backward launch shape
(flowstudy.models.ssm.triton_scan.BACKWARD_SHAPE) for the Mamba cases, one variant each
("default" keeps default_config's); the row records the scan's shapes and default launch shapes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from flowstudy.train import Trainer
from flowstudy.train.config import resolve_config
from flowstudy.train.graph import CapturedStep
from flowstudy.train.stacked import StackedGroup
from flowstudy.train.precision import matmul_precision
from result_rows import error_text, keep  # benchmarks/
from timing import sync


DEVICE = "cuda"


def _config(arch: str, backend: str | None, seed: int, precision: str, steps: int):
    model = {"backend": backend} if backend else {}
    return resolve_config(None, dict(arch=arch, model=model, steps=steps, val_every=10**9, device=DEVICE, seed=seed, precision=precision))


def build(arch: str, members: int, backend: str | None, precision: str, compile_mode: str | None, workdir: Path, leading: bool = True):
    """A replay function for one captured step of the case, and K."""
    steps = 10**5  # long schedules: the replays stay in the warm-up-free part of the table
    if members == 1:
        trainer = Trainer(_config(arch, backend, 0, precision, steps), workdir / "single", progress=False, leading=leading)
        trainer.setup(None)
        if compile_mode is not None:
            trainer.space.field = torch.compile(trainer.space.field, mode=compile_mode, dynamic=False)
        with matmul_precision(trainer.device, precision):
            step = CapturedStep(trainer, capture=DEVICE == "cuda")
        return step  # the trainer's per-step call: host bookkeeping (epochs), then the replay
    configs = [_config(arch, backend, s, precision, steps) for s in range(members)]
    group = StackedGroup(configs, [workdir / f"m{s}" for s in range(members)], leading=leading)
    group.prepare([False] * members)
    with matmul_precision(group.device, precision):
        graph = group.make_graph()
    if graph is None and DEVICE == "cuda":
        raise RuntimeError("the group step was not captured")
    return lambda: group.step(graph)  # the loop's per-step call: epochs advanced, then the replay


def measure(replay, members: int, repeats: int, top: int) -> dict:
    for _ in range(5):
        replay()
    sync(DEVICE)
    start = time.perf_counter()
    for _ in range(repeats):
        replay()
    sync(DEVICE)
    wall = (time.perf_counter() - start) / repeats
    from torch.profiler import ProfilerActivity, profile

    profiled = 5
    with profile(activities=[ProfilerActivity.CUDA if DEVICE == "cuda" else ProfilerActivity.CPU]) as prof:
        for _ in range(profiled):
            replay()
        sync(DEVICE)
    kind = torch.autograd.DeviceType.CUDA if DEVICE == "cuda" else torch.autograd.DeviceType.CPU
    kernels = [e for e in prof.events() if e.device_type == kind and (DEVICE == "cuda" or not e.cpu_children)]
    busy = sum(e.device_time for e in kernels) / profiled / 1e6  # s per replay
    by_name = Counter()
    for e in kernels:
        by_name[e.name] += e.device_time / profiled / 1e3  # ms per replay
    return {
        "model_steps_per_s": members / wall,
        "wall_ms": wall * 1e3,
        "gpu_busy_ms": busy * 1e3,
        "busy_fraction": busy / wall,
        "kernels_per_step": len(kernels) / profiled,
        "top": [(name[:90], round(ms, 4)) for name, ms in by_name.most_common(top)],
    }


@contextlib.contextmanager
def _scan_bwd_shape(shape: str, row: dict):
    """Within: the Triton scan's backward launch shape BLOCK_D:WARPS:SPLITS:ROWS
    (flowstudy.models.ssm.triton_scan.BACKWARD_SHAPE; "default": unchanged); row["scan_calls"]
    gets the distinct (batch, dim, seqlen, dstate) -> default launch shape of the scan's calls."""
    from flowstudy.models.ssm import triton_scan

    library, before = triton_scan.default_config, triton_scan.BACKWARD_SHAPE
    seen = row.setdefault("scan_calls", {})

    def config(batch, dim, seqlen, dstate, n_sm=132):
        cfg = library(batch, dim, seqlen, dstate, n_sm)
        seen[f"{batch}x{dim}x{seqlen}x{dstate}"] = dataclasses.astuple(cfg)
        return cfg

    triton_scan.default_config = config
    triton_scan.BACKWARD_SHAPE = triton_scan.parse_backward_shape(shape)
    try:
        yield
    finally:
        triton_scan.default_config, triton_scan.BACKWARD_SHAPE = library, before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["mlp:1", "unet:1", "mlp:64", "mamba:9:triton"], help="ARCH:K[:BACKEND]")
    parser.add_argument("--precision", nargs="+", default=["fp32", "tf32"], choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--compile", default=None, help="also time single runs with the step field compiled in this mode")
    parser.add_argument(
        "--coordinates", nargs="+", default=["leading"], choices=["leading", "all"],
        help="subspace recipes' steps on their k leading eigen-coordinates, or on all D (Trainer's leading)",
    )
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to smoke-test this script (no graphs)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--torch-update", action="store_true",
                        help="groups step with the torch clipping/AdamW/EMA update instead of the fused kernel (flowstudy.train.flat_update)")
    parser.add_argument("--scan-bwd", nargs="+", default=["default"], metavar="BLOCK_D:WARPS:SPLITS:ROWS[:LANES]",
                        help="Triton scan backward launch shapes to time for the Mamba cases (default: the library's)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if args.torch_update:
        import flowstudy.train.stacked as stacked

        stacked.FUSED_UPDATE = False
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 unless a case asks otherwise
    rows = []
    for case in args.cases:
        arch, k, *rest = case.split(":")
        members, backend = int(k), (rest[0] if rest else None)
        variants = [(p, None, c) for c in args.coordinates for p in args.precision]
        if args.compile and members == 1:
            variants += [(p, args.compile, c) for c in args.coordinates for p in args.precision]
        shapes = args.scan_bwd if arch.startswith("mamba") and backend == "triton" else ["default"]
        for (precision, compile_mode, coordinates), shape in ((v, b) for v in variants for b in shapes):
            row = {"case": case, "precision": precision, "compile": compile_mode, "coordinates": coordinates}
            if shape != "default":
                row["scan_bwd"] = shape
            try:
                with tempfile.TemporaryDirectory() as tmp, _scan_bwd_shape(shape, row):
                    replay = build(arch, members, backend, precision, compile_mode, Path(tmp), leading=coordinates == "leading")
                    row.update(measure(replay, members, args.repeats if members < 16 else max(10, args.repeats // 3), args.top))
            except Exception as err:  # one case's failure must not lose the others
                row["error"] = error_text(err)
            keep(rows, row, args.out, "profile_gpu_steps.json")
    print("\n| case | coordinates | precision | compile | model-steps/s | wall ms | GPU busy ms | busy | kernels/step |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if "scan_bwd" in r:
            r = {**r, "case": f"{r['case']} bwd {r['scan_bwd']}"}
        if "error" in r:
            print(f"| {r['case']} | {r['coordinates']} | {r['precision']} | {r['compile'] or ''} | {r['error']} | | | | |")
            continue
        print(
            f"| {r['case']} | {r['coordinates']} | {r['precision']} | {r['compile'] or ''} | {r['model_steps_per_s']:,.0f} | {r['wall_ms']:.3f} | "
            f"{r['gpu_busy_ms']:.3f} | {r['busy_fraction']:.2f} | {r['kernels_per_step']:.0f} |"
        )


if __name__ == "__main__":
    main()
