"""Report over optimisation directories: best-so-far curves with 95 % intervals over seeds, the
final-best table with paired tests across objectives, the nearest texts of the best candidates, and
how real the proposals are. Writes report.md, report.html (self-contained) and best_so_far.png.

Realism of a method's proposals (everything after the initial design, all seeds pooled), in the
prior's standardised space: fidelity and novelty (:mod:`flowstudy.metrics.neighbours`; 1 = like
real held-out rows), the mean norm in the original space over that of real held-out rows, and the
median distance to the nearest real row (training or held-out). The Gaussian fit of the training
rows is measured the same way, as the bar to clear.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowstudy.errors import ConfigError
from flowstudy.io import atomic_write_text
from flowstudy.metrics.stats import mean_ci, paired_test
from flowstudy.study.report import Table


@dataclass
class OptimizationRun:
    """One optimisation directory: its config and evaluations."""

    path: Path
    config: dict
    x: np.ndarray
    y: np.ndarray
    round: np.ndarray

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.config["prior"], self.config["objective"], self.config.get("label") or self.config["method"])

    def best_so_far(self, budget: int) -> np.ndarray:
        """[budget] running maximum; a run stopped early keeps its last best."""
        best = np.maximum.accumulate(self.y[:budget])
        return np.concatenate([best, np.full(budget - len(best), best[-1])]) if len(best) else np.full(budget, np.nan)


def find_runs(paths: list[str | Path]) -> list[OptimizationRun]:
    """Every optimisation directory at or below ``paths`` that holds evaluations."""
    runs = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise ConfigError(f"{root}: no such directory")
        for cfg in sorted([root / "config.json"] if (root / "evaluations.npz").exists() else root.rglob("config.json")):
            if (cfg.parent / "evaluations.npz").exists():
                with np.load(cfg.parent / "evaluations.npz") as d:
                    runs.append(OptimizationRun(cfg.parent, json.loads(cfg.read_text()), d["x"], d["y"], d["round"]))
    if not runs:
        raise ConfigError(f"no optimisation directories with evaluations under {', '.join(map(str, paths))}")
    return runs


def _short(objective: str) -> str:
    return objective.replace("builtin:sonar-gsm8k-1k:", "")


def _prior_name(spec: str) -> str:
    return spec if spec.startswith("gaussian:") else Path(spec).name


def final_table(runs: list[OptimizationRun], budget: int) -> tuple[Table, dict, list[str]]:
    """Mean final best over seeds per (objective, method) and per prior, plus means over objectives.

    Returns the table, {(prior, method): [per-objective means]} and the objectives in that order."""
    cells: dict[tuple, list[float]] = defaultdict(list)
    for r in runs:
        cells[r.key].append(float(r.best_so_far(budget)[-1]))
    columns = sorted({(p, m) for p, _, m in cells})
    objectives = sorted({o for _, o, _ in cells})
    headers = ["objective"] + [f"{m} ({_prior_name(p)})" for p, m in columns]
    rows, best = [], set()
    means = {c: np.array([np.mean(cells[(c[0], o, c[1])]) if (c[0], o, c[1]) in cells else np.nan for o in objectives]) for c in columns}
    for i, o in enumerate(objectives):
        values = np.array([means[c][i] for c in columns])
        rows.append([_short(o)] + [f"{v:.3f}" if np.isfinite(v) else "-" for v in values])
        if np.isfinite(values).any():
            best.add((i, 1 + int(np.nanargmax(values))))
    groups = [("mean over objectives", np.ones(len(objectives), bool))]
    cosine = np.array([o.startswith("cosine:") for o in objectives])
    if cosine.any() and not cosine.all():
        groups.append(("mean over cosine objectives", cosine))
    for label, mask in groups:
        overall = [float(np.mean(means[c][mask])) for c in columns]
        rows.append([label] + [f"{v:.3f}" for v in overall])
        best.add((len(rows) - 1, 1 + int(np.nanargmax(overall))))
    return Table(f"Final best score after {budget} evaluations (mean over seeds)", headers, rows, best), means, objectives


def paired_table(means: dict, objectives: list[str], budget: int, prefix: str = "") -> Table:
    """Best configuration (by mean over the objectives starting with ``prefix``) against each other one,
    paired across those objectives (Wilcoxon signed-rank from 6 objectives, else paired t)."""
    mask = np.array([o.startswith(prefix) for o in objectives])
    sub = {c: v[mask] for c, v in means.items()}
    ranked = sorted(sub, key=lambda c: -np.nanmean(sub[c]))
    top = ranked[0]
    rows = []
    for c in ranked[1:]:
        ok = np.isfinite(sub[top]) & np.isfinite(sub[c])
        if ok.sum() < 2:
            continue
        t = paired_test(sub[top][ok], sub[c][ok])
        wins = int((sub[top][ok] > sub[c][ok]).sum())
        rows.append([f"{c[1]} ({_prior_name(c[0])})", f"{t.mean_difference:+.3f}", f"{wins}/{int(ok.sum())}", f"{t.pvalue:.2g}", t.test])
    what = f"{prefix.rstrip(':')} objectives" if prefix else "objectives"
    title = f"{top[1]} ({_prior_name(top[0])}) against the others, paired over {int(mask.sum())} {what} at {budget} evaluations"
    return Table(title, ["other", "mean difference", "wins", "p", "test"], rows)


def curves(runs: list[OptimizationRun], budget: int) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(prior, method) -> mean, lo, hi [budget] of the best-so-far averaged over objectives, CI over seeds."""
    by: dict[tuple, dict[int, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by[(r.key[0], r.key[2])][r.config["seed"]].append(r.best_so_far(budget))
    out = {}
    for key, seeds in by.items():
        per_seed = np.stack([np.mean(v, axis=0) for v in seeds.values()])  # [S, budget]: mean over objectives
        if len(per_seed) > 1:
            stats = [mean_ci(per_seed[:, i]) for i in range(budget)]
            out[key] = (np.array([s.mean for s in stats]), np.array([s.lo for s in stats]), np.array([s.hi for s in stats]))
        else:
            out[key] = (per_seed[0], per_seed[0], per_seed[0])
    return out


def plot_curves(data: dict, path: Path, budget: int) -> Path:
    from flowstudy.study.plots import _figure, _save

    fig = _figure(7, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    steps = np.arange(1, budget + 1)
    for key, (mean, lo, hi) in sorted(data.items(), key=lambda kv: -kv[1][0][-1]):
        (line,) = ax.plot(steps, mean, label=f"{key[1]} ({_prior_name(key[0])})")
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best score so far (mean over objectives)")
    ax.set_title("Best so far, 95 % CI over seeds")
    ax.legend(fontsize=8)
    return _save(fig, path)


def realism_table(runs: list[OptimizationRun]) -> Table:
    """Fidelity, novelty, norm ratio and nearest-real distance of proposals, per (prior, method)."""
    from flowstudy.data import load_dataset
    from flowstudy.guidance.prior import load_prior
    from flowstudy.metrics.baselines import gaussian_baseline
    from flowstudy.metrics.neighbours import neighbour_ratios

    rows = []
    by: dict[tuple, list[np.ndarray]] = defaultdict(list)
    for r in runs:
        by[(r.key[0], r.key[2])].append(r.x[r.round > 0] if (r.round > 0).any() else r.x)
    priors = {}
    for (prior_spec, method), xs in sorted(by.items()):
        if prior_spec not in priors:
            prior = load_prior(prior_spec)
            if prior.val_spec is None:
                raise ConfigError(f"prior {prior_spec}: no held-out split to measure realism against; pass --no-realism")
            val = load_dataset(prior.val_spec)
            priors[prior_spec] = (prior, prior.train_std(), prior.to_std(val.embeddings), np.linalg.norm(val.embeddings, axis=1).mean())
        prior, train, held, held_norm = priors[prior_spec]
        rows.append([f"{method} ({_prior_name(prior_spec)})", *_realism(prior, np.concatenate(xs), train, held, held_norm, neighbour_ratios)])
    prior, train, held, held_norm = next(iter(priors.values()))
    fit = prior.to_original(gaussian_baseline(train, 1000, np.random.default_rng(0)))
    rows.append(["Gaussian fit (1000 samples)", *_realism(prior, fit, train, held, held_norm, neighbour_ratios)])
    headers = ["proposals", "n", "fidelity", "novelty", "norm / real norm", "median distance to nearest real row"]
    return Table("How real the proposals are (after the initial design; 1.0 = like real held-out rows)", headers, rows)


def _realism(prior, x: np.ndarray, train, held, held_norm: float, ratios_fn) -> list[str]:
    z = prior.to_std(x)
    ratios = ratios_fn(z, train, held)
    real = torch.cat([train, held])
    nearest = torch.cdist(z, real).min(dim=1).values.median()
    norm = np.linalg.norm(x.astype(np.float64), axis=1).mean() / held_norm
    return [str(len(x)), f"{ratios.fidelity:.3f}", f"{ratios.novelty:.3f}", f"{norm:.3f}", f"{float(nearest):.2f}"]


def best_texts(runs: list[OptimizationRun], per_group: int = 3) -> list[str]:
    """Markdown lines: for each (prior, objective, method), the best candidates of its seeds with their nearest texts."""
    lines = []
    for r in sorted(runs, key=lambda r: (r.key, r.config["seed"]))[: 10 * per_group]:
        jsonl = r.path / "evaluations.jsonl"
        if not jsonl.exists():
            continue
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        b = max(records, key=lambda rec: rec["score"])
        lines.append(
            f"- {r.key[2]} / {_short(r.key[1])} / seed {r.config['seed']}: score {b['score']:.3f}, nearest training row "
            f"{b['nearest_train_row']} (cosine {b['cosine']:.3f}): {json.dumps(b['text'])[:200]}"
        )
    return lines


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    html: Path
    figure: Path


def write_report(paths: list[str | Path], out: str | Path | None = None, realism: bool = True) -> ReportPaths:
    """Write report.md, report.html and best_so_far.png to ``out`` (default: the first path)."""
    return render_report(find_runs(paths), Path(out or paths[0]), realism=realism)


def render_report(runs: list[OptimizationRun], out: Path, realism: bool = True, notes: list[str] = ()) -> ReportPaths:
    """The report of ``runs`` in folder ``out``; ``notes``: Markdown paragraphs placed after the intro."""
    budget = max(r.config["budget"] for r in runs)
    table, means, objectives = final_table(runs, budget)
    tables = [table]
    if len(means) > 1 and len(objectives) > 1:
        prefixes = [""] + (["cosine:"] if any(o.startswith("cosine:") for o in objectives) and not all(o.startswith("cosine:") for o in objectives) else [])
        tables += [paired_table(means, objectives, budget, prefix) for prefix in prefixes]
    if realism:
        tables.append(realism_table(runs))
    figure = plot_curves(curves(runs, budget), out / "best_so_far.png", budget)
    n_seeds = len({r.config["seed"] for r in runs})
    intro = (
        f"{len(runs)} optimisations: {len({r.key[1] for r in runs})} objectives, {len({r.key[2] for r in runs})} methods, "
        f"{len({r.key[0] for r in runs})} priors, {n_seeds} seeds; budget {budget} evaluations."
    )
    texts = best_texts(runs)
    md = ["# Guided optimisation report", "", intro, "", *notes, ""] + [t.markdown() for t in tables]
    md += ["![best so far](best_so_far.png)", ""]
    if texts:
        md += ["## Best candidates and their nearest training texts", ""] + texts
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    data = base64.b64encode(figure.read_bytes()).decode("ascii")
    body = [f"<h1>Guided optimisation report</h1><p>{html.escape(intro)}</p>"] + [f"<p>{html.escape(n)}</p>" for n in notes]
    body += [t.html() for t in tables] + [f"<img alt='best so far' src='data:image/png;base64,{data}'>"]
    if texts:
        body += ["<h2>Best candidates</h2><ul>"] + [f"<li>{html.escape(line[2:])}</li>" for line in texts] + ["</ul>"]
    page = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Guided optimisation</title></head><body>"
    atomic_write_text(out / "report.html", page + "\n".join(body) + "</body></html>\n")
    return ReportPaths(out / "report.md", out / "report.html", figure)
