"""Scores of a guidance benchmark without its embeddings: dump them, merge dumps, report on them.

    python benchmarks/guidance_scores.py dump DIR OUT.json           # {cell: {config, y}} of every cell under DIR
    python benchmarks/guidance_scores.py report OUT_DIR A.json B.json ... [--train DATASPEC]
        # merged scores.json + report (no realism table); --train: the priors' training rows, for the ceilings

The dumps let runs made on several machines (one per group of seeds) be reported together; the
realism table needs the embeddings and comes from ``flowstudy optimize report`` on one machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def dump(root: Path, out: Path) -> None:
    cells = {}
    for cfg in sorted(root.rglob("config.json")):
        if (cfg.parent / "evaluations.npz").exists():
            with np.load(cfg.parent / "evaluations.npz") as data:
                cells[str(cfg.parent.relative_to(root))] = {"config": json.loads(cfg.read_text()), "y": data["y"].tolist()}
    out.write_text(json.dumps(cells))
    print(f"{len(cells)} cells -> {out}")


def report(out: Path, dumps: list[Path], train: str | None = None) -> None:
    from flowstudy.guidance.report import OptimizationRun, render_report
    from flowstudy.io import atomic_write_text

    merged: dict = {}
    for path in dumps:
        merged.update(json.loads(path.read_text()))
    rewrite = [p.resolve() for p in dumps] == [(out / "scores.json").resolve()]  # the report again, from its own scores
    if not rewrite:
        for cell in merged.values():
            cell["y"] = [round(v, 6) for v in cell["y"]]
        atomic_write_text(out / "scores.json", json.dumps(merged, sort_keys=True) + "\n")
    runs = [
        OptimizationRun(out / key, cell["config"], np.zeros((len(cell["y"]), 0)), np.asarray(cell["y"]), np.zeros(len(cell["y"]), int))
        for key, cell in sorted(merged.items())
    ]
    source = "" if rewrite else f" merged from {', '.join(p.name for p in dumps)}"
    notes = [f"Scores of {len(runs)} cells{source} (scores.json)."]
    paths = render_report(runs, out, realism=False, notes=notes, train_data=train)
    print(f"wrote {paths.markdown}, {paths.html}, {paths.figure}")


if __name__ == "__main__":
    verb, *rest = sys.argv[1:]
    if verb == "dump":
        dump(Path(rest[0]), Path(rest[1]))
    elif verb == "report":
        train = rest[rest.index("--train") + 1] if "--train" in rest else None
        names = [p for i, p in enumerate(rest[1:], 1) if p != "--train" and rest[i - 1] != "--train"]
        report(Path(rest[0]), [Path(p) for p in names], train)
    else:
        sys.exit(f"unknown verb {verb!r}; use dump or report")
