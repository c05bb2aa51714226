"""Final best scores of a guidance benchmark beside the top-k bound of each cosine target.

    python benchmarks/guidance_bounds.py DIR [DIR ...] [--out FILE.md] [--budget 100]

For every cosine objective of the optimisation directories below DIR: the top-k bound
(:mod:`flowstudy.guidance.bounds`, k = 32, 64, 96, 128, from the prior's training rows) and each
method's final best score, mean over seeds; then the mean over targets per method and seed, and the
share of targets where a method reaches the k = 64 and k = 128 bounds. Other objectives get the
scores alone. ``flowstudy optimize report DIR`` gives the curves, paired tests and realism.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def collect(paths: list[str], budget: int) -> tuple[dict[tuple[str, str, int], float], str]:
    """(objective, method label, seed) -> best score in the first ``budget`` evaluations; the prior spec."""
    from flowstudy.guidance.report import find_runs

    runs = [r for r in find_runs(paths) if len(r.y) >= budget]  # unfinished cells are left out
    best = {(r.config["objective"], r.config.get("label") or r.config["method"], r.config["seed"]): float(r.y[:budget].max()) for r in runs}
    return best, runs[0].config["prior"]


def render(best: dict, prior_spec: str) -> str:
    from flowstudy.guidance.bounds import KS, objective_bounds
    from flowstudy.guidance.prior import load_prior

    objectives = sorted({o for o, _, _ in best})
    methods = sorted({m for _, m, _ in best})
    seeds = sorted({s for _, _, s in best})
    bounds = objective_bounds(load_prior(prior_spec).train.embeddings, objectives)
    found = {(o, m): [best[(o, m, s)] for s in seeds if (o, m, s) in best] for o in objectives for m in methods}
    mean = {key: float(np.mean(v)) if v else float("nan") for key, v in found.items()}
    short = lambda o: o.replace("builtin:sonar-gsm8k-1k:", "")  # noqa: E731
    lines = ["| objective | " + " | ".join(f"bound k={k}" for k in KS) + " | " + " | ".join(methods) + " |"]
    lines.append("| --- " * (1 + len(KS) + len(methods)) + "|")
    for o in objectives:
        b = [f"{bounds[o][k]:.3f}" if o in bounds else "" for k in KS]
        scores = [f"{mean[(o, m)]:.3f}" if found[(o, m)] else "-" for m in methods]
        lines.append(f"| {short(o)} | " + " | ".join(b + scores) + " |")
    cosine = [o for o in objectives if o in bounds]
    if cosine:
        b = [f"{np.mean([bounds[o][k] for o in cosine]):.3f}" for k in KS]
        scores = [f"**{np.mean([mean[(o, m)] for o in cosine]):.3f}**" if all(found[(o, m)] for o in cosine) else "-" for m in methods]
        lines.append("| **mean over cosine targets** | " + " | ".join(b + scores) + " |")
        header = "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | targets >= bound k=64 | targets >= bound k=128 |"
        lines += ["", header, "| --- " * (3 + len(seeds)) + "|"]
        for m in methods:
            per_seed = [np.mean([best[(o, m, s)] for o in cosine]) if all((o, m, s) in best for o in cosine) else np.nan for s in seeds]
            have = [o for o in cosine if found[(o, m)]]  # the share among the targets this method ran on
            reach = [f"{sum(mean[(o, m)] >= bounds[o][k] for o in have)}/{len(have)}" for k in (64, 128)]
            lines.append(f"| {m} | " + " | ".join([f"{v:.3f}" if np.isfinite(v) else "-" for v in per_seed] + reach) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--out", default=None)
    parser.add_argument("--budget", type=int, default=100)
    args = parser.parse_args(argv)
    best, prior_spec = collect(args.dirs, args.budget)
    text = render(best, prior_spec)
    if args.out:
        from flowstudy.io import atomic_write_text

        atomic_write_text(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
