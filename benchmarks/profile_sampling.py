"""Where graph-replayed sampling spends its GPU time: samples/s and the kernels of one draw.

Trains ``--arch``'s recipe for ``--train-steps`` steps (the weights' values do not change the
kernels), then draws ``--rows`` samples at 50 NFE (Euler) as ``flowstudy sample`` does for a
subspace run: the k network coordinates integrated in the base's eigenbasis
(flowstudy.flows.subspace.EigenbasisFlow), the solve replayed as one CUDA graph, bf16 autocast
inside the network, the velocity torch.compile'd (``--compile none``: not). For each variant:
    samples/s     rows x draws / wall time, after a warm-up draw
    GPU busy      summed kernel time per draw (torch.profiler) against its wall time
    per NFE       kernels and GPU milliseconds per network evaluation
    categories    GPU time per network evaluation by kind of kernel (matrix products, the
                  selective scan, the convolution, normalisation, fused elementwise, other)
    top kernels   the --top kernels by GPU time

``--scan-fwd default 16 64`` runs each variant with the Triton scan forward's tiles of
default_config's channels or of that many; ``--ops`` also profiles one evaluation outside the graph and lists
its operators by input shape (what a kernel in the table was called for).

    python benchmarks/profile_sampling.py --arch mamba --rows 16384 32768 --out DIR
    python benchmarks/profile_sampling.py --arch mamba --compile default --scan-fwd default 16 --ops --out DIR
    python benchmarks/profile_sampling.py --arch mlp-tiny --device cpu --rows 64 --train-steps 3 --compile none   # smoke test

Writes DIR/profile_sampling.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flowstudy.flows.subspace import EigenbasisFlow  # noqa: E402
from flowstudy.graph_solver import COMPILE_MODES, GraphSolver  # noqa: E402
from flowstudy.sampling import velocity_of  # noqa: E402
from timing import sync  # noqa: E402  (benchmarks/)
from flowstudy.train import Trainer  # noqa: E402
from flowstudy.run import load_run  # noqa: E402
from flowstudy.train.config import resolve_config  # noqa: E402
from result_rows import error_text, keep  # noqa: E402

NFE = 50
CATEGORIES = [  # (label, pattern on the kernel's name), first match wins
    ("scan", r"_scan_fwd|selective_scan"),
    ("conv", r"_conv"),
    ("matmul", r"gemm|cutlass|sm90_xmma|nvjet|ampere_|sm80_|_mm_|matmul"),
    ("norm", r"layer_norm|LayerNorm|native_layer_norm"),
    ("fused elementwise", r"^triton_"),
    ("copy", r"copy|Memcpy|Memset"),
]


def category(name: str) -> str:
    for label, pattern in CATEGORIES:
        if re.search(pattern, name):
            return label
    return "other"


def eigen_draw(run, rows: int, precision: str, compile_mode: str | None, device: torch.device):
    """A function drawing [rows, D] samples as ``sample_standardized`` does for a subspace run."""
    flow = EigenbasisFlow.of(run.model)
    if flow is None:
        raise SystemExit(f"{run.config['arch']}'s run has no subspace residual: the eigenbasis path does not apply")
    solver = GraphSolver(velocity_of(run, device, precision, flow.subspace_velocity), rows, flow.k,
                         device=device, method="euler", steps=NFE, compile=compile_mode)
    complement = flow.complement_map("euler", NFE)
    x = torch.randn(rows, run.standardizer.dim, device=device)
    return lambda: flow.from_eigen(flow.solve(flow.to_eigen(x), solver, complement))


def operators(run, rows: int, precision: str, compile_mode: str | None, device: torch.device, top: int) -> list:
    """The operators of one network evaluation outside a graph (eager, or the compiled velocity's
    own kernels), by name and input shapes: [(name, shapes, GPU ms)], the top ``top`` by GPU time."""
    from torch.profiler import ProfilerActivity, profile

    flow = EigenbasisFlow.of(run.model)
    velocity = velocity_of(run, device, precision, flow.subspace_velocity)
    if compile_mode is not None:
        velocity = torch.compile(velocity, mode=compile_mode, dynamic=False)
    y, t = torch.randn(rows, flow.k, device=device), torch.full((rows,), 0.5, device=device)
    with torch.no_grad():
        for _ in range(2):
            velocity(y, t)
        sync(device)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
            velocity(y, t)
            sync(device)
    events = prof.key_averages(group_by_input_shape=True)
    key = "device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    # aten operators only: a compiled velocity's "Torch-Compiled Region" events nest and hold all of it
    rows_out = [(e.key, str(e.input_shapes)[:160], getattr(e, key) / 1e3) for e in events if e.key.startswith("aten::")]
    return [(name, shapes, round(ms, 4)) for name, shapes, ms in sorted(rows_out, key=lambda r: -r[2])[:top]]


def measure(draw, rows: int, repeats: int, top: int, device: torch.device) -> dict:
    draw()  # compiled and captured before the clock starts
    sync(device)
    tic = time.perf_counter()
    for _ in range(repeats):
        draw()
    sync(device)
    wall = (time.perf_counter() - tic) / repeats
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        draw()
        sync(device)
    kind = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    kernels = [e for e in prof.events() if e.device_type == kind and (cuda or not e.cpu_children)]
    by_name, by_category = Counter(), Counter()
    for e in kernels:  # on CPU (a smoke test) the operators' own CPU time
        ms = (e.device_time if cuda else e.self_cpu_time_total) / 1e3 / NFE  # per network evaluation
        by_name[e.name] += ms
        by_category[category(e.name)] += ms
    busy = sum(by_name.values()) * NFE / 1e3
    return {
        "samples_per_s": rows / wall,
        "draw_ms": wall * 1e3,
        "gpu_busy_fraction": busy / wall,
        "ms_per_nfe": busy * 1e3 / NFE,
        "kernels_per_nfe": len(kernels) / NFE,
        "categories_ms_per_nfe": {k: round(v, 4) for k, v in by_category.most_common()},
        "top_ms_per_nfe": [(name[:100], round(ms, 4)) for name, ms in by_name.most_common(top)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mamba")
    parser.add_argument("--backend", default="triton", help="the Mamba layers' backend (ignored by other networks)")
    parser.add_argument("--rows", type=int, nargs="+", default=[16384])
    parser.add_argument("--precision", nargs="+", default=["bf16"], choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--compile", nargs="+", default=["default"], choices=[*COMPILE_MODES, "none"])
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--ops", action="store_true", help="also profile one evaluation outside the graph: operators by input shapes")
    parser.add_argument("--scan-fwd", nargs="+", default=["default"], metavar="default|CHANNELS",
                        help="the Triton scan forward's channels a tile (default_config's, or a power of two), one variant each")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    for scan_fwd in args.scan_fwd:
        if scan_fwd != "default" and not (scan_fwd.isdigit() and int(scan_fwd) & (int(scan_fwd) - 1) == 0):
            parser.error(f"--scan-fwd: 'default' or a power of two of channels a tile; got {scan_fwd!r}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device (--device cpu for a smoke test)")
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        model = {"backend": args.backend} if args.arch.startswith("mamba") else {}
        cfg = resolve_config(None, {"arch": args.arch, "model": model, "steps": args.train_steps,
                                    "device": args.device, "val_every": 10**9})
        Trainer(cfg, f"{tmp}/run", progress=False).fit()
        run = load_run(f"{tmp}/run", "last", device=device)
        from flowstudy.models.ssm import triton_scan

        library = triton_scan.default_config
        for rows, precision, mode, scan_fwd in itertools.product(args.rows, args.precision, args.compile, args.scan_fwd):
            row = {"arch": args.arch, "rows": rows, "precision": precision, "compile": mode, "scan_fwd": scan_fwd}
            triton_scan.default_config = (
                library if scan_fwd == "default" else (lambda *a, _c=int(scan_fwd): dataclasses.replace(library(*a), fwd_block_d=_c))
            )
            torch._dynamo.reset()  # code compiled under the other switch would be reused
            compile_mode = None if mode == "none" else mode
            try:
                row.update(measure(eigen_draw(run, rows, precision, compile_mode, device), rows, args.repeats, args.top, device))
                if args.ops:
                    row["operators"] = operators(run, rows, precision, compile_mode, device, args.top)
            except Exception as err:  # one variant's failure must not lose the others
                row["error"] = error_text(err)
            keep(rows_out, row, args.out, "profile_sampling.json")
    lines = ["| rows | precision | compile | scan forward | samples/s | GPU busy | ms / NFE | kernels / NFE | categories (ms / NFE) |",
             "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows_out:
        if "error" in r:
            lines.append(f"| {r['rows']} | {r['precision']} | {r['compile']} | {r['scan_fwd']} | {r['error']} | | | | |")
            continue
        cats = ", ".join(f"{k} {v:.3f}" for k, v in r["categories_ms_per_nfe"].items())
        lines.append(f"| {r['rows']} | {r['precision']} | {r['compile']} | {r['scan_fwd']} | {r['samples_per_s']:,.0f} | {r['gpu_busy_fraction']:.2f} "
                     f"| {r['ms_per_nfe']:.3f} | {r['kernels_per_nfe']:.0f} | {cats} |")
    print("\n".join(lines))
    if args.out:
        (args.out / "profile_sampling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
