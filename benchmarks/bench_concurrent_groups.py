"""Stacked groups side by side on one GPU: one after another, in threads (a CUDA stream each, the
study's ``threads`` executor) and in processes (the ``local`` executor: the GPU gives processes
turns, time slices, rather than running their kernels together).

    python benchmarks/bench_concurrent_groups.py --jobs mamba:3 mamba-tied:3 mamba-merged:3 dit:3 \\
        --steps 600 --precision tf32 --out DIR

A job ARCH:MEMBERS trains MEMBERS seeds of ARCH's recipe (as ``flowstudy train --arch ARCH``
resolves it) as one captured StackedGroup for --steps steps, without validation. Per mode:
- wall: all jobs, setup and capture included (the processes' start too);
- steady model-steps/s: all jobs' model-steps between each job's first and last loss records,
  over the union of those windows (one after another: the sum of the jobs' times);
- each job's own model-steps/s between its records (side by side, while sharing the GPU).
Writes DIR/bench_concurrent_groups.json and prints a markdown table.

    python benchmarks/bench_concurrent_groups.py --jobs mamba:9 mamba:3 mamba-tied:3 dit:3 --modes threads \
        --scan-bwd default 4:1:8:2 --repeats 2

times each mode with each Triton-scan backward launch shape BLOCK_D:WARPS:SPLITS:ROWS
(flowstudy.models.ssm.triton_scan.BACKWARD_SHAPE), the shapes taking turns --repeats times, so that
shapes are compared side by side on one machine. (Serial and threads only: worker processes do not
see the setting.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from flowstudy.study.executors import LocalExecutor, ThreadExecutor  # noqa: E402


def fit_job(job: str, root: str, steps: int, precision: str, device: str = "cuda") -> dict:
    """Train job ARCH:MEMBERS as one captured group; its (step, time) marks and step kind."""
    from flowstudy.train.config import resolve_config
    from flowstudy.train.stacked import StackedGroup

    arch, members = job.split(":")
    values = dict(arch=arch, steps=steps, val_every=10**9, device=device, precision=precision)
    configs = [resolve_config(None, {**values, "seed": s}) for s in range(int(members))]
    name = job.replace(":", "-")
    group = StackedGroup(configs, [Path(root) / f"{name}-{s}" for s in range(int(members))])
    for member in group.members:  # no validation or checkpoints inside the timed steps
        member.validate_and_save = lambda trackers: False
    group.fit()
    if device == "cuda":  # this thread's stream: a device-wide sync fails while another thread captures
        torch.cuda.current_stream().synchronize()
    return {"job": job, "members": int(members), "marks": group.marks, "captured": group.graph is not None,
            "vmapped": group.vmapped, "step_kind": group.step_kind}


def steady_rate(outs: list[dict]) -> float:
    """All jobs' model-steps between their first and last loss records, over the time during which
    at least one job was between them (the union of the windows: their sum when one ran after
    another, the span from the first start to the last end when they overlap)."""
    windows = sorted((o["marks"][0][1], o["marks"][-1][1]) for o in outs)
    covered, end = 0.0, float("-inf")
    for a, b in windows:
        covered += max(0.0, b - max(a, end))
        end = max(end, b)
    return sum(o["members"] * (o["marks"][-1][0] - o["marks"][0][0]) for o in outs) / covered


def job_rate(out: dict) -> float:
    (s0, t0), (s1, t1) = out["marks"][0], out["marks"][-1]
    return out["members"] * (s1 - s0) / (t1 - t0)


def run_mode(mode: str, jobs: list[str], steps: int, precision: str, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        fn = partial(fit_job, root=tmp, steps=steps, precision=precision, device=device)
        started = time.perf_counter()
        if mode == "serial":
            outs = [fn(job) for job in jobs]
        else:
            executor = ThreadExecutor(workers=len(jobs)) if mode == "threads" else LocalExecutor(workers=len(jobs))
            done = dict(executor.map_cells(fn, jobs))
            for job, out in done.items():
                if isinstance(out, BaseException):
                    raise RuntimeError(f"{mode}: {job} failed: {out}\n{getattr(out, 'traceback_text', '')}")
            outs = [done[job] for job in jobs]
        wall = time.perf_counter() - started
    return {"mode": mode, "wall_s": wall, "model_steps": sum(o["members"] * steps for o in outs),
            "steady_model_steps_per_s": steady_rate(outs),
            "jobs": [{**o, "model_steps_per_s": job_rate(o)} for o in outs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", nargs="+", default=["mamba:3", "mamba-tied:3", "mamba-merged:3", "dit:3"])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--precision", default="tf32", choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--modes", nargs="+", default=["serial", "threads", "processes"], choices=["serial", "threads", "processes"])
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of the script (no streams, no graphs)")
    parser.add_argument("--scan-bwd", nargs="+", default=["default"], metavar="BLOCK_D:WARPS:SPLITS:ROWS",
                        help="Triton scan backward launch shapes, taking turns (default: the library's)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the shapes")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device (--device cpu for a smoke test)")
    if args.scan_bwd != ["default"] and "processes" in args.modes:
        parser.error("--scan-bwd applies to the serial and threads modes only (worker processes do not see it)")
    from flowstudy.models.ssm import triton_scan

    rows = []
    for _ in range(args.repeats):
        for shape in args.scan_bwd:
            triton_scan.BACKWARD_SHAPE = triton_scan.parse_backward_shape(shape)
            for mode in args.modes:
                rows.append({**run_mode(mode, args.jobs, args.steps, args.precision, args.device), "scan_bwd": shape})
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "jobs"}), flush=True)
    triton_scan.BACKWARD_SHAPE = None
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    (args.out / "bench_concurrent_groups.json").write_text(json.dumps(
        {"device": device, "torch": torch.__version__, "jobs": args.jobs, "steps": args.steps, "precision": args.precision, "rows": rows}, indent=1))
    base = next((r for r in rows if r["mode"] == "serial"), rows[0])
    versus = "one after another" if base["mode"] == "serial" else "the first row"
    print(f"\n{device}; torch {torch.__version__}; jobs {' '.join(args.jobs)}; {args.steps} steps each; {args.precision}\n")
    print(f"| mode | scan backward | wall s | steady model-steps/s | vs {versus} | per job model-steps/s |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for r in rows:
        per_job = ", ".join(f"{j['job']} {j['model_steps_per_s']:.0f}" for j in r["jobs"])
        print(f"| {r['mode']} | {r['scan_bwd']} | {r['wall_s']:.1f} | {r['steady_model_steps_per_s']:.0f} | "
              f"{r['steady_model_steps_per_s'] / base['steady_model_steps_per_s']:.2f}× | {per_job} |")


if __name__ == "__main__":
    main()
