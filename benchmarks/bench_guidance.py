"""Guided-optimisation benchmark: priors x method variants x objectives x seeds, one process per cell.

    python benchmarks/bench_guidance.py studies/guidance-cpu.toml --out DIR [--workers N] [--limit-seeds S]

The spec (TOML) has a ``[bench]`` table (budget, q, n_init, seeds, priors, objectives, steps, pca)
and one ``[variants.LABEL]`` table per method variant (``method`` and optional ``options``). Every
cell is an optimisation directory DIR/<prior>/<label>/<objective>/seed<S>; finished cells are
skipped and killed ones resume, so the command can be re-run until done. Each worker uses one
thread. ``flowstudy optimize report DIR`` then writes the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.replace("builtin:sonar-gsm8k-1k:", ""))


def cells(spec: dict, out: Path, seeds: list[int]) -> list[tuple[Path, dict]]:
    bench = spec["bench"]
    todo = []
    for prior in bench["priors"]:
        for label, variant in spec["variants"].items():
            for objective in bench["objectives"]:
                for seed in seeds:
                    cfg = dict(
                        prior=prior, objective=objective, method=variant["method"], budget=bench.get("budget", 100),
                        q=bench.get("q", 4), n_init=bench.get("n_init", 20), seed=seed, steps=bench.get("steps", 32),
                        pca_k=variant.get("pca", bench.get("pca", 32)), kernel=variant.get("kernel", bench.get("kernel", "rbf")),
                        options=variant.get("options", {}), label=label,
                    )
                    todo.append((out / _slug(Path(prior).name) / label / _slug(objective) / f"seed{seed}", cfg))
    return todo


def run_cell(path: str, cfg: dict) -> tuple[str, float, float]:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from flowstudy.guidance.loop import LoopConfig, Optimisation
    from flowstudy.guidance.objectives import parse_objective

    start = time.time()
    state = Optimisation.create_or_open(path, LoopConfig(**cfg))
    history = state.run(parse_objective(cfg["objective"]))
    return path, float(history.y.max()), time.time() - start


def main(argv: list[str] | None = None) -> int:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--limit-seeds", type=int, default=None, help="Use only the first S seeds of the spec.")
    parser.add_argument("--seeds", default=None, help="Comma-separated seeds to run instead of the spec's.")
    args = parser.parse_args(argv)
    spec = tomllib.loads(Path(args.spec).read_text())
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else spec["bench"]["seeds"][: args.limit_seeds]
    todo = cells(spec, Path(args.out), seeds)
    done = [p for p, _ in todo if (p / "evaluations.npz").exists() and _finished(p)]
    # seeds outermost: a time-limited run finishes whole seeds of every variant first
    todo = sorted([(p, c) for p, c in todo if p not in done], key=lambda pc: (pc[1]["seed"], pc[1]["objective"]))
    print(f"{len(todo)} cells to run ({len(done)} done) with {args.workers} workers", flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_cell, str(p), c) for p, c in todo]
        failed = 0
        for future in as_completed(futures):
            try:
                path, best, seconds = future.result()
            except Exception as err:  # one broken cell must not stop the others; rerunning retries it
                failed += 1
                print(f"FAILED: {type(err).__name__}: {err}", flush=True)
                continue
            print(f"{best:.4f} {seconds:6.1f}s {path}", flush=True)
    return 1 if failed else 0


def _finished(path: Path) -> bool:
    import json

    import numpy as np

    cfg = json.loads((path / "config.json").read_text())
    with np.load(path / "evaluations.npz") as data:
        return len(data["y"]) >= cfg["budget"]


if __name__ == "__main__":
    sys.exit(main())
