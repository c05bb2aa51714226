"""Do the defaults beat the Gaussian fit on data other than the builtin SONAR set?

For each set (the zoo's six at their default size, then builtin:sonar-gsm8k-1k) this runs what a
new user runs, with no other option:

    flowstudy train --data SET:train --arch mlp --out OUT/NAME
    flowstudy evaluate OUT/NAME --nll --json

(the zoo sets get ``--recipe auto`` by default, the builtin set its named recipe), and records
the recipe line that training printed, the held-out NLL beside the Gaussian fit's, and fidelity,
the cosine-kNN classifier test (AUC) and coverage of the model beside the Gaussian fit's row, on
the set's test split. Rows are written after each set to OUT/results.json and OUT/results.md.

    python benchmarks/zoo_defaults.py --out docs/results/zoo [--runs DIR] [--only clusters-1024 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SETS = [
    "zoo:clusters-1024", "zoo:manifold-1024", "zoo:heavytail-1024", "builtin:sonar-gsm8k-1k",
    "zoo:clusters-768", "zoo:manifold-768", "zoo:heavytail-768",
]
METRICS = {"fidelity": "lower", "c2st_knn_auc": "lower", "coverage": "higher"}  # better direction


def flowstudy(*args: str, log: Path) -> str:
    """Run the ``flowstudy`` command; its stdout and stderr go to ``log``; returns stdout."""
    command = [sys.executable, "-m", "flowstudy.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    with log.open("a") as f:
        f.write(f"$ flowstudy {' '.join(args)}\n{done.stderr}{done.stdout}\n")
    if done.returncode != 0:
        raise RuntimeError(f"flowstudy {' '.join(args)} failed ({done.returncode}): {done.stderr[-500:]}")
    return done.stdout


def one_set(spec: str, out: Path, runs: Path) -> dict:
    """Train with the defaults into ``runs``, evaluate with NLL, return the row (logs in ``out``)."""
    name = spec.split(":")[1]
    run, log = runs / name, out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    started = time.perf_counter()
    flowstudy("train", "--data", f"{spec}:train", "--arch", "mlp", "--out", str(run), log=log)
    trained = time.perf_counter()
    result = json.loads(flowstudy("evaluate", str(run), "--nll", "--json", log=log))
    recipe = recipe_line(run)
    rows, nll = result["rows"], result["nll"]
    row = {
        "set": spec, "recipe": recipe, "train_seconds": round(trained - started, 1), "evaluate_seconds": round(time.perf_counter() - trained, 1),
        "nll_model": nll["model"], "nll_gaussian": nll["gaussian"], "nll_gap": nll["gap"], "nll_gap_se": nll["gap_std_error"],
        "reference": result["reference"],
    }
    for metric, better in METRICS.items():
        model, gaussian = rows["model"][metric], rows["gaussian"][metric]
        row[f"{metric}_model"], row[f"{metric}_gaussian"] = model, gaussian
        row[f"{metric}_beats"] = model < gaussian if better == "lower" else model > gaussian
    row["beats_all"] = bool(nll["gap"] < 0 and all(row[f"{m}_beats"] for m in METRICS))
    return row


def recipe_line(run: Path) -> str:
    """What training printed about its recipe (RUN/recipe.json), or that it used the named one."""
    chosen = run / "recipe.json"
    return json.loads(chosen.read_text())["message"] if chosen.exists() else "recipe: the named SONAR recipe (mlp)"


def markdown(rows: list[dict]) -> str:
    """The table of results.md: one line per set, model / Gaussian fit for each number."""
    head = "| set | NLL model / Gaussian (nats/dim) | fidelity | c2st_knn_auc | coverage | beats the Gaussian on all | recipe chosen | train s |"
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['set']} | failed: {r['error']} | | | | | | |")
            continue
        cells = [f"{r[f'{m}_model']:.3f} / {r[f'{m}_gaussian']:.3f}" for m in METRICS]
        recipe = r["recipe"].split(" -- ")[0].removeprefix("recipe: ")
        lines.append(
            f"| {r['set']} | {r['nll_model']:.4f} / {r['nll_gaussian']:.4f} ({r['nll_gap']:+.4f} ± {r['nll_gap_se']:.2g}) | "
            + " | ".join(cells) + f" | {'yes' if r['beats_all'] else 'no'} | {recipe} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/zoo"))
    parser.add_argument("--runs", type=Path, default=Path("/tmp/flowstudy-zoo-runs"), help="where the run directories go")
    parser.add_argument("--merge", nargs="*", type=Path, default=[], help="only rewrite the tables, adding the rows of these results.json")
    parser.add_argument("--only", nargs="*", help="set names (e.g. clusters-1024 sonar-gsm8k-1k)")
    args = parser.parse_args()
    sets = [s for s in SETS if not args.only or s.split(":")[1] in args.only]
    results = args.out / "results.json"
    rows = [r for r in (json.loads(results.read_text()) if results.exists() else []) if r["set"] not in sets or args.merge]
    if args.merge:
        for other in args.merge:
            rows = [r for r in rows if r["set"] not in {o["set"] for o in json.loads(other.read_text())}] + json.loads(other.read_text())
        for r in rows:
            if "error" not in r:
                r["recipe"] = recipe_line(args.runs / r["set"].split(":")[1])
        rows.sort(key=lambda r: SETS.index(r["set"]))
        results.write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "results.md").write_text(markdown(rows))
        return
    for spec in sets:
        try:
            row = one_set(spec, args.out, args.runs)
        except Exception as err:  # keep the other sets' rows
            row = {"set": spec, "error": f"{type(err).__name__}: {str(err)[:300]}"}
        rows.append(row)
        print(json.dumps(row), flush=True)
        results.write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "results.md").write_text(markdown(rows))


if __name__ == "__main__":
    main()
