"""Where a study's evaluation phase spends its time: cell by cell (the reference) against stacked groups.

Trains a small study on builtin:sonar-gsm8k-1k (the architectures' recipes, shortened to --steps, one
stacked group per network), then evaluates every cell twice from the same trained runs: one by one
(flowstudy.study.cell.run_cell) and as evaluation groups (flowstudy.study.group_eval.evaluate_cells).
Prints, per network and path, the seconds of sampling, sample metrics, held-out NLL and the rest
(straightness, norms, files), and the largest difference between the two paths' metrics (relative,
over every result field that is not a timing).

    python benchmarks/profile_evaluation.py --archs mlp mamba --steps 200 --out /tmp/evalprofile
    python benchmarks/profile_evaluation.py --archs mlp --seeds 0 1 --steps 20 --n-samples 200 --nll-steps 1 --device cpu --out /tmp/ep

Writes OUT/profile_evaluation.json (the per-cell results of both paths and the summary) and
OUT/profile_evaluation.md (the table). ``--from-study DIR`` instead prints the same columns for a study
that ran (its results.jsonl), one row per network: how its evaluation phase's time was spent.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

PHASES = ("sample_seconds", "metrics_seconds", "nll_seconds", "eval_seconds")


def study_spec(archs: list[str], seeds: list[int], steps: int, n_samples: int, device: str, precision: str, nll_steps: int):
    from flowstudy.study.spec import parse_spec

    return parse_spec({
        "study": {"name": "evalprofile", "seeds": seeds, "n_samples": n_samples, "nll": "exact", "nll_graph": True, "group_size": 64,
                  "nll_steps": nll_steps},
        "base": {"data": "builtin:sonar-gsm8k-1k", "steps": steps, "device": device, "precision": precision},
        "axes": {"arch": archs, "flow": ["icfm"]},
    }, source="profile_evaluation")


def largest_difference(a: dict, b: dict) -> tuple[float, str]:
    """The largest relative difference over the numeric non-timing fields of two results, and its field."""
    from flowstudy.study.cell import VOLATILE_FIELDS

    worst, name = 0.0, ""
    for key in set(a) & set(b):
        x, y = a[key], b[key]
        if key in VOLATILE_FIELDS or key == "nfe" or isinstance(x, bool) or not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            continue
        diff = abs(x - y) / max(abs(x), abs(y), 1e-12)
        if math.isfinite(diff) and diff > worst:
            worst, name = diff, key
    return worst, name


def study_table(study_dir: Path) -> str:
    """The evaluation seconds of a finished study, per network (its cells' results.jsonl)."""
    results = [json.loads(line) for line in (study_dir / "results.jsonl").read_text().splitlines() if line.strip()]
    lines = ["| network | cells | evaluation groups' wall s | sampling s | metrics s | NLL s | rest s | training s (max) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for arch in dict.fromkeys(r["arch"] for r in results):
        rows = [r for r in results if r["arch"] == arch]
        total = {p: sum(r.get(p) or 0.0 for r in rows) for p in PHASES}
        groups = sum((r.get("group_eval_seconds") or 0.0) / max(1, r.get("eval_group_size") or 1) for r in rows)
        rest = total["eval_seconds"] - total["metrics_seconds"] - total["nll_seconds"]
        train = max((r.get("train_seconds") or 0.0) for r in rows)
        lines.append(f"| {arch} | {len(rows)} | {groups:.1f} | {total['sample_seconds']:.1f} | {total['metrics_seconds']:.1f} | "
                     f"{total['nll_seconds']:.1f} | {rest:.1f} | {train:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-study", help="a study folder: print its evaluation's seconds per network and stop")
    parser.add_argument("--archs", nargs="+", default=["mlp", "mamba"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200, help="training steps of every run (the recipes' are 2000-3000)")
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--nll-steps", type=int, default=20, help="RK4 steps of the NLL (the study's: 20)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="tf32")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.from_study:
        print(study_table(Path(args.from_study)))
        return
    if not args.out:
        parser.error("--out is required")

    import torch

    from flowstudy.study.cell import run_cell
    from flowstudy.study.group_eval import evaluate_cells, evaluation_groups
    from flowstudy.study.groups import pack_cells, train_cell_group

    out = Path(args.out)
    spec = study_spec(args.archs, args.seeds, args.steps, args.n_samples, args.device, args.precision, args.nll_steps)
    cells_dir, groups_dir = out / "cells-path", out / "groups-path"
    tic = time.perf_counter()
    for group in pack_cells(spec.cells, 64):
        train_cell_group(group, cells_dir)
    train_seconds = time.perf_counter() - tic
    groups_dir.mkdir(parents=True, exist_ok=True)
    if not (groups_dir / "runs").exists():
        (groups_dir / "runs").symlink_to((cells_dir / "runs").resolve())
    rows, per_cell = [], {}
    for group in evaluation_groups(spec.cells, 64):
        arch = group[0].config.arch
        for path, evaluate in (("cells", lambda g: [run_cell(c, cells_dir) for c in g]),
                               ("groups", lambda g: evaluate_cells(g, groups_dir))):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            tic = time.perf_counter()
            results = evaluate(group)
            wall = time.perf_counter() - tic
            failed = [r for r in results if not isinstance(r, dict)]
            if failed:
                raise SystemExit(f"{arch}, {path} path: {failed[0]}")
            for cell, result in zip(group, results):
                per_cell.setdefault(cell.id, {})[path] = result
            sums = {p: sum(r[p] for r in results) for p in PHASES}
            rows.append({"arch": arch, "path": path, "cells": len(group), "wall_seconds": wall, **sums,
                         "other_seconds": sums["eval_seconds"] - sums["metrics_seconds"] - sums["nll_seconds"]})
    diffs = {cid: largest_difference(r["cells"], r["groups"]) for cid, r in per_cell.items()}
    worst = max(diffs.values(), key=lambda d: d[0])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    lines = [
        f"Evaluation of {len(spec.cells)} cells ({', '.join(args.archs)} x seeds {args.seeds}, {args.steps} training steps, "
        f"{args.n_samples} samples, exact NLL of the 400 test rows) on {device}; training {train_seconds:.1f} s.",
        "",
        "| network | path | cells | wall s | sampling s | metrics s | NLL s | rest s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['path']} | {r['cells']} | {r['wall_seconds']:.2f} | {r['sample_seconds']:.2f} | "
                     f"{r['metrics_seconds']:.2f} | {r['nll_seconds']:.2f} | {r['other_seconds']:.2f} |")
    lines += ["", f"Largest relative difference between the paths over every metric of every cell: {worst[0]:.2e} ({worst[1]})."]
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile_evaluation.md").write_text(text + "\n")
    (out / "profile_evaluation.json").write_text(json.dumps(
        {"device": device, "train_seconds": train_seconds, "rows": rows, "largest_difference": worst,
         "differences": diffs, "results": per_cell}, indent=1, default=str))


if __name__ == "__main__":
    main()
