"""Does packing a study's runs into stacked groups change its results? Run a study twice, each run
trained alone and in groups of up to N, and compare every cell's metrics and every run's best
validation loss.

Study groups draw member by member from each run's own generator (flowstudy.study.groups), so on
the CPU the two should agree to float rounding; on a GPU, within the rounding of batched against
single matrix products, which Adam's normalisation amplifies over a run.

    python benchmarks/study_groups_match.py benchmarks/grouped_smoke.toml --group-size 2 --out /tmp/match
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from flowstudy.study import run_study


def _numbers(record: dict, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a nested evaluation record, by dotted key."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def compare(alone: Path, grouped: Path) -> list[str]:
    """Markdown rows: per cell the largest relative metric difference; per run both best losses."""
    lines = ["| cell | metrics compared | largest relative difference (metric) |", "| --- | ---: | --- |"]
    for cell in sorted((alone / "cells").iterdir()):
        a = _numbers(json.loads((cell / "evaluation.json").read_text()))
        b = _numbers(json.loads((grouped / "cells" / cell.name / "evaluation.json").read_text()))
        shared = [k for k in a if k in b]
        worst = max(shared, key=lambda k: abs(a[k] - b[k]) / (abs(a[k]) + 1e-12))
        lines.append(f"| {cell.name} | {len(shared)} | {abs(a[worst] - b[worst]) / (abs(a[worst]) + 1e-12):.1e} ({worst}) |")
    lines += ["", "| run | best val loss, alone | in its group | group size, draws |", "| --- | ---: | ---: | --- |"]
    for summary in sorted((alone / "runs").glob("*/train_summary.json")):
        a = json.loads(summary.read_text())
        b = json.loads((grouped / "runs" / summary.parent.name / "train_summary.json").read_text())
        lines.append(f"| {summary.parent.name} | {a['best_val_loss']:.6f} | {b['best_val_loss']:.6f} | {b.get('group_size')}, {b.get('group_step')} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True, help="the two studies go to OUT/alone and OUT/grouped")
    args = parser.parse_args()
    for name, size in (("alone", 1), ("grouped", args.group_size)):
        tic = time.perf_counter()
        rows = run_study(args.spec, args.out / name, progress=False, group_size=size)
        print(f"{name}: {len(rows)} cells in {time.perf_counter() - tic:.1f} s (group size {size})", flush=True)
    print("\n".join(compare(args.out / "alone", args.out / "grouped")))


if __name__ == "__main__":
    main()
