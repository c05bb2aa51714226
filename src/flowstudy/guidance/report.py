"""Report over optimisation directories, in the look of the study report (:mod:`flowstudy.reporting`).

It opens with the verdict: a leaderboard of the methods by final best score (mean over objectives,
95 % interval over seeds), each paired against the leader across objectives, and how many
objectives each takes past the best training row; the leader is named the winner only where its
interval clears the runner-up's (with one seed, where the paired test across objectives says so).
Then the best-so-far curves (bands only where there are seeds to make them; the shared initial
design drawn once and marked; ceiling lines: the best training row and, for cosine targets, the
top-k bounds of :mod:`flowstudy.guidance.ceilings`), the final best per objective with intervals,
the best candidates' nearest training texts, and how real the proposals are.

Realism of a method's proposals (everything after the initial design, all seeds pooled), in the
prior's standardised space: fidelity and novelty (:mod:`flowstudy.metrics.neighbours`; 1 = like
real held-out rows), the mean norm in the original space over that of real held-out rows, and the
median distance to the nearest real row (training or held-out). The Gaussian fit of the training
rows is measured the same way, as the bar to clear.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowstudy.errors import ConfigError
from flowstudy.io import atomic_write_text
from flowstudy.metrics.stats import mean_ci, paired_test
from flowstudy.reporting import Table, figure, html_figure, html_page, plural, save, series_styles, style_axes


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
        """(prior spec, objective spec, method label): what the report groups runs by."""
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


# ----------------------------------------------------------------------------- names
_HASH = re.compile(r"_[0-9a-f]{8}$")


def short_objective(objective: str) -> str:
    """"cosine:builtin:sonar-gsm8k-1k:val:17" -> "cosine val:17"."""
    kind, _, rest = objective.partition(":")
    rest = re.sub(r"^builtin:[^:]+:", "", rest)
    return f"{kind} {rest}" if rest else kind


def prior_name(spec: str) -> str:
    """A prior's name without its folder or study hash: "runs/mlp_s0_d9521dc7" -> "mlp_s0"."""
    if spec.startswith("gaussian:"):
        return "Gaussian fit"
    return _HASH.sub("", Path(spec).name)


def _labels(columns: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(prior, method) -> "guided" (one prior) or "guided, mlp prior" (several)."""
    several = len({p for p, _ in columns}) > 1
    return {(p, m): f"{m}, {prior_name(p)} prior" if several else m for p, m in columns}


# ----------------------------------------------------------------------------- numbers
@dataclass
class Finals:
    """Final best scores: per (prior, method) column, per objective, per seed."""

    columns: list[tuple[str, str]]
    objectives: list[str]
    values: dict[tuple[str, str], dict[str, dict[int, float]]]  # column -> objective -> seed -> final best

    def objective_means(self, column) -> np.ndarray:
        """[objectives] mean over seeds (NaN where the column lacks the objective)."""
        per = self.values[column]
        return np.array([np.mean(list(per[o].values())) if per.get(o) else np.nan for o in self.objectives])

    def seed_means(self, column, objectives: list[str]) -> list[float]:
        """Per seed, the mean final best over ``objectives`` (seeds that have all of them)."""
        per = self.values[column]
        seeds = set.intersection(*(set(per.get(o, {})) for o in objectives)) if objectives else set()
        return [float(np.mean([per[o][s] for o in objectives])) for s in sorted(seeds)]


def finals(runs: list[OptimizationRun], budget: int) -> Finals:
    """The final best score after ``budget`` evaluations of every run, arranged by :class:`Finals`."""
    values: dict = defaultdict(lambda: defaultdict(dict))
    for r in runs:
        values[(r.key[0], r.key[2])][r.key[1]][int(r.config["seed"])] = float(r.best_so_far(budget)[-1])
    return Finals(sorted(values), sorted({r.key[1] for r in runs}, key=natural_key), {c: dict(v) for c, v in values.items()})


def natural_key(text: str) -> list:
    """Sort key that orders numbers by value: "val:9" before "val:17"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _ci_text(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "–"
    s = mean_ci(values)
    return f"{s.mean:.3f} [{s.lo:.3f}, {s.hi:.3f}]"


def _interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, lo, hi); lo = hi = mean with one value."""
    if len(values) < 2:
        return (values[0], values[0], values[0]) if values else (np.nan, np.nan, np.nan)
    s = mean_ci(values)
    return s.mean, s.lo, s.hi


def objective_kinds(objectives: list[str]) -> dict[str, list[str]]:
    """"cosine" -> its objectives, "topic" -> ..., in first-seen order."""
    kinds: dict[str, list[str]] = {}
    for o in objectives:
        kinds.setdefault(o.split(":", 1)[0], []).append(o)
    return kinds


# ----------------------------------------------------------------------------- verdict
def leaderboard(f: Finals, budget: int, labels: dict, ceilings=None) -> tuple[Table, list[str]]:
    """The methods ranked by mean final best over objectives, with intervals over seeds, paired
    against the leader across objectives, and how many objectives each takes past the best training
    row; plus the verdict sentences."""
    kinds = objective_kinds(f.objectives)
    order = sorted(f.columns, key=lambda c: -np.nanmean(f.objective_means(c)))
    leader = order[0]
    headers = ["method", f"final best ↑, mean over {plural(len(f.objectives), 'objective')}"]
    if len(kinds) > 1:
        headers += [f"over {plural(len(v), k + ' objective')}" for k, v in kinds.items()]
    has_ceiling = ceilings is not None and all(o in ceilings.best_train for o in f.objectives)
    headers += ["past the best training row"] if has_ceiling else []
    headers += ["against the leader: difference, objectives won, p"] if len(order) > 1 and len(f.objectives) > 1 else []
    rows, best = [], set()
    for c in order:
        row = [labels[c], _ci_text(f.seed_means(c, f.objectives))]
        row += [_ci_text(f.seed_means(c, v)) for v in kinds.values()] if len(kinds) > 1 else []
        if has_ceiling:
            means = f.objective_means(c)
            past = sum(int(m > ceilings.best_train[o]) for m, o in zip(means, f.objectives) if np.isfinite(m))
            row.append(f"{past} of {len(f.objectives)}")
        if len(order) > 1 and len(f.objectives) > 1:
            row.append("–" if c == leader else _paired_text(f, leader, c))
        rows.append(row)
    lines, separated = _winner_lines(f, order, labels, budget)
    if separated:
        best.add((0, 1))
    if has_ceiling:
        line = f"The best training row scores {ceilings.mean_best_train(f.objectives):.3f} on average"
        topk = ceilings.mean_topk(kinds.get("cosine", []))
        if topk:
            line += "; the top-k bounds of the cosine targets average " + ", ".join(f"{v:.3f} (k = {k})" for k, v in topk.items())
        lines.append(line + ".")
    one_seed = all(len(f.seed_means(c, f.objectives)) < 2 for c in order)
    note = ("One seed: means over objectives, no interval. Bold: the winner, ahead of the runner-up by the paired test "
            "across objectives (p < 0.05)." if one_seed else
            "Mean [95 % CI] over seeds of the mean over objectives. Bold: the winner, its interval clear of the runner-up's.")
    note += " Past the best training row: objectives whose mean final best beats the objective's best training row." if has_ceiling else ""
    note += " Paired over objectives: Wilcoxon signed-rank from 6 objectives, else a paired t-test." if len(f.objectives) > 1 else ""
    return Table(f"Leaderboard after {budget} evaluations", headers, rows, best, note=note), lines


def _paired_text(f: Finals, leader, other) -> str:
    a, b = f.objective_means(leader), f.objective_means(other)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return "–"
    t = paired_test(a[ok], b[ok])
    return f"{-t.mean_difference:+.3f}, {int((b[ok] > a[ok]).sum())} of {int(ok.sum())}, p {t.pvalue:.2g}"


def _winner_lines(f: Finals, order, labels, budget) -> tuple[list[str], bool]:
    if len(order) < 2:
        return [f"One method: {labels[order[0]]}, final best {_ci_text(f.seed_means(order[0], f.objectives))}."], False
    top, runner = order[0], order[1]
    a, b = _interval(f.seed_means(top, f.objectives)), _interval(f.seed_means(runner, f.objectives))
    name, other = labels[top], labels[runner]
    many_seeds = len(f.seed_means(top, f.objectives)) > 1 and len(f.seed_means(runner, f.objectives)) > 1
    if many_seeds:
        separated = a[1] > b[2]
        how = "its interval is clear of" if separated else "its interval overlaps"
        verdict = f"Winner after {budget} evaluations: {name}" if separated else f"No clear winner after {budget} evaluations: the leader, {name},"
        return [f"{verdict} ({a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}]); {how} the runner-up's, {other} ({b[0]:.3f} [{b[1]:.3f}, {b[2]:.3f}])."], separated
    x, y = f.objective_means(top), f.objective_means(runner)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 2:
        t = paired_test(x[ok], y[ok])
        if t.pvalue < 0.05:
            return [f"Winner after {budget} evaluations: {name} ({a[0]:.3f}), ahead of {other} ({b[0]:.3f}) on "
                    f"{int((x[ok] > y[ok]).sum())} of {int(ok.sum())} objectives, paired p = {t.pvalue:.2g} (one seed: no interval)."], True
    return [f"No clear winner after {budget} evaluations: {name} leads ({a[0]:.3f}) against {other} ({b[0]:.3f}), "
            "with one seed and no significant paired difference."], False


def final_table(f: Finals, budget: int, labels: dict) -> Table:
    """Objectives × methods: mean [95 % CI] of the final best over seeds; bold where the row's best
    interval clears the runner-up's."""
    columns = sorted(f.columns, key=lambda c: -np.nanmean(f.objective_means(c)))
    rows, best = [], set()
    for i, o in enumerate(f.objectives):
        seeds = [list(f.values[c].get(o, {}).values()) for c in columns]
        rows.append([short_objective(o)] + [_ci_text(v) for v in seeds])
        intervals = [_interval(v) if v else (np.nan,) * 3 for v in seeds]
        ranked = sorted(range(len(columns)), key=lambda j: -np.nan_to_num(intervals[j][0], nan=-np.inf))
        if len(ranked) > 1 and all(len(seeds[j]) > 1 for j in ranked[:2]) and intervals[ranked[0]][1] > intervals[ranked[1]][2]:
            best.add((i, 1 + ranked[0]))
    note = "Mean [95 % CI] over seeds; bold: the row's best, its interval clear of the runner-up's."
    return Table(f"Final best per objective after {budget} evaluations", ["objective"] + [labels[c] for c in columns], rows, best, note=note)


# ----------------------------------------------------------------------------- curves
def curves(runs: list[OptimizationRun], budget: int, objectives: list[str] | None = None) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(prior, method) -> (mean, lo, hi [budget], seeds) of the best-so-far averaged over
    ``objectives`` (default all), with a 95 % CI over seeds (lo = hi = mean with one seed)."""
    by: dict[tuple, dict[int, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if objectives is None or r.key[1] in objectives:
            by[(r.key[0], r.key[2])][r.config["seed"]].append(r.best_so_far(budget))
    out = {}
    for key, seeds in by.items():
        per_seed = np.stack([np.mean(v, axis=0) for v in seeds.values()])  # [S, budget]: mean over objectives
        if len(per_seed) > 1:
            stats = [mean_ci(per_seed[:, i]) for i in range(budget)]
            out[key] = (np.array([s.mean for s in stats]), np.array([s.lo for s in stats]), np.array([s.hi for s in stats]), len(per_seed))
        else:
            out[key] = (per_seed[0], per_seed[0], per_seed[0], 1)
    return out


def plot_curves(runs: list[OptimizationRun], budget: int, labels: dict, path: Path, ceilings=None) -> Path:
    """Best so far against evaluations, one panel per objective kind (mean over its objectives):
    bands over seeds where there are several, the shared initial design once in grey, a marker
    where it ends, ceiling lines (best training row; top-k bounds for cosine targets)."""
    kinds = objective_kinds(sorted({r.key[1] for r in runs}, key=natural_key))
    n_init = max(int(r.config.get("n_init", 0)) for r in runs)
    legend_rows = -(-(len(labels) + 4) // 3)
    fig = figure(300 * len(kinds) + 22 * legend_rows + 20)
    axes = fig.subplots(len(kinds), 1, squeeze=False).ravel()
    styles = dict(zip(sorted(labels, key=lambda c: labels[c]), series_styles(len(labels))))
    steps = np.arange(1, budget + 1)
    for ax, (kind, objectives) in zip(axes, kinds.items()):
        data = curves(runs, budget, objectives)
        shared = _shared_initial_design(data, n_init)
        if shared:
            mean = data[shared[0]][0]
            ax.plot(steps[:n_init], mean[:n_init], color="#9a9a9a", linewidth=2.5,
                    label=f"initial design, shared by {len(shared)} methods" if ax is axes[0] else None)
        for key, (mean, lo, hi, n_seeds) in sorted(data.items(), key=lambda kv: -kv[1][0][-1]):
            st = styles[key]
            start = n_init - 1 if key in shared else 0
            ax.plot(steps[start:], mean[start:], color=st.colour, linestyle=st.linestyle, linewidth=1.5, label=labels[key] if ax is axes[0] else None)
            if n_seeds > 1:
                ax.fill_between(steps[start:], lo[start:], hi[start:], color=st.colour, alpha=0.15, linewidth=0)
        if n_init:
            ax.axvline(n_init + 0.5, color="#444444", linestyle=":", linewidth=1)
            ax.annotate("initial design ends", (n_init + 0.5, 0.02), xycoords=("data", "axes fraction"), fontsize=8,
                        color="#444444", xytext=(3, 0), textcoords="offset points")
        _ceiling_lines(ax, ceilings, objectives, first=ax is axes[0])
        seeds = max(d[3] for d in data.values())
        band = "95 % CI over seeds" if seeds > 1 else "one seed, no band"
        ax.set_title(f"{kind}: mean over {plural(len(objectives), 'objective')} ({band})")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("best score so far")
        ax.set_xlim(1, budget)
        style_axes(ax)
    fig.legend(loc="outside lower center", ncols=3, frameon=False, fontsize="small")
    return save(fig, path)


def _shared_initial_design(data: dict, n_init: int) -> list[tuple]:
    """The largest set of (prior, method) whose mean best-so-far agree over the initial design
    (at least two; they drew the same prior samples), else []."""
    if n_init < 1:
        return []
    groups: dict[tuple, list] = defaultdict(list)
    for key, (mean, *_) in data.items():
        groups[tuple(np.round(mean[:n_init], 9))].append(key)
    largest = max(groups.values(), key=len)
    return largest if len(largest) > 1 else []


def _ceiling_lines(ax, ceilings, objectives: list[str], first: bool) -> None:
    """Ceilings as grey lines, each named at its left end, above the early evaluations."""
    if ceilings is None:
        return
    lines = [("best training row", ceilings.mean_best_train(objectives), "--")]
    lines += [(f"top-{k} bound", v, ":") for k, v in ceilings.mean_topk(objectives).items()]
    for name, value, style in lines:
        if value is None:
            continue
        ax.axhline(value, color="#555555", linestyle=style, linewidth=1)
        ax.annotate(f"{name} {value:.3f}", (0.0, value), xycoords=("axes fraction", "data"), xytext=(3, 2),
                    textcoords="offset points", ha="left", va="bottom", fontsize=7.5, color="#333333")


# ----------------------------------------------------------------------------- realism and texts
def realism_table(runs: list[OptimizationRun], labels: dict) -> Table:
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
        rows.append([labels[(prior_spec, method)], *_realism(prior, np.concatenate(xs), train, held, held_norm, neighbour_ratios)])
    prior, train, held, held_norm = next(iter(priors.values()))
    fit = prior.to_original(gaussian_baseline(train, 1000, np.random.default_rng(0)))
    separator = len(rows)
    rows.append(["Gaussian fit (1000 samples)", *_realism(prior, fit, train, held, held_norm, neighbour_ratios)])
    headers = ["proposals", "n", "fidelity →1", "novelty ↑ to 1", "norm / real norm →1", "median distance to nearest real row ↓"]
    note = "Everything proposed after the initial design, all seeds pooled; 1.0 = like real held-out rows."
    return Table("How real the proposals are", headers, rows, separator_before=separator, note=note)


def _realism(prior, x: np.ndarray, train, held, held_norm: float, ratios_fn) -> list[str]:
    z = prior.to_std(x)
    ratios = ratios_fn(z, train, held)
    real = torch.cat([train, held])
    nearest = torch.cdist(z, real).min(dim=1).values.median()
    norm = np.linalg.norm(x.astype(np.float64), axis=1).mean() / held_norm
    return [str(len(x)), f"{ratios.fidelity:.3f}", f"{ratios.novelty:.3f}", f"{norm:.3f}", f"{float(nearest):.2f}"]


def best_texts_table(runs: list[OptimizationRun], labels: dict, max_chars: int = 140) -> Table | None:
    """Per objective, the best candidate over methods and seeds: its score, method, nearest training
    text and that text's cosine; for cosine targets also the target's own text."""
    from flowstudy.guidance.ceilings import target_text

    best: dict[str, tuple[float, OptimizationRun, dict]] = {}
    for r in runs:
        jsonl = r.path / "evaluations.jsonl"
        if not jsonl.exists():
            continue
        records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        if not records:
            continue
        b = max(records, key=lambda rec: rec["score"])
        if r.key[1] not in best or b["score"] > best[r.key[1]][0]:
            best[r.key[1]] = (b["score"], r, b)
    if not best:
        return None
    rows = []
    for objective in sorted(best, key=natural_key):
        score, r, b = best[objective]
        target = _safe(target_text, objective)
        rows.append([short_objective(objective), f"{score:.3f}", f"{labels[(r.key[0], r.key[2])]}, seed {r.config['seed']}",
                     _clip(b.get("text", ""), max_chars), f"{b.get('cosine', float('nan')):.3f}", _clip(target or "–", max_chars)])
    headers = ["objective", "best score", "found by", "nearest training text", "its cosine", "target text"]
    return Table("The best candidates and their nearest training texts", headers, rows, align="lrllrl")


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception:  # a data set that is not here: the report goes on without it
        return None


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ----------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`write_report`."""

    markdown: Path
    html: Path
    figure: Path


def write_report(paths: list[str | Path], out: str | Path | None = None, realism: bool = True, train_data: str | None = None) -> ReportPaths:
    """Write report.md, report.html and best_so_far.png to ``out`` (default: the first path).

    train_data: the data set spec of the priors' training rows, for the ceiling lines (default: read
    from each prior's run folder or ``gaussian:DATASPEC``; no ceilings when it cannot be found)."""
    return render_report(find_runs(paths), Path(out or paths[0]), realism=realism, train_data=train_data)


def render_report(runs: list[OptimizationRun], out: Path, realism: bool = True, notes: list[str] = (), train_data: str | None = None) -> ReportPaths:
    """The report of ``runs`` in folder ``out``; ``notes``: Markdown paragraphs placed after the intro."""
    budget = max(r.config["budget"] for r in runs)
    f = finals(runs, budget)
    labels = _labels(f.columns)
    ceilings = _ceilings(runs, f.objectives, train_data)
    board, lines = leaderboard(f, budget, labels, ceilings)
    tables = [final_table(f, budget, labels)]
    texts = best_texts_table(runs, labels)
    tables += [texts] if texts is not None else []
    if realism:
        tables.append(realism_table(runs, labels))
    figure_path = plot_curves(runs, budget, labels, out / "best_so_far.png", ceilings)
    n_seeds = len({r.config["seed"] for r in runs})
    priors = sorted({prior_name(r.key[0]) for r in runs})
    intro = (
        f"{plural(len(runs), 'optimisation')}: {plural(len(f.objectives), 'objective')}, "
        f"{plural(len({r.key[2] for r in runs}), 'method')}, prior {', '.join(priors)}, {plural(n_seeds, 'seed')}; "
        f"budget {budget} evaluations, the first {max(int(r.config.get('n_init', 0)) for r in runs)} an initial design of prior samples."
    )
    caption = ("Best score so far against evaluations (mean over objectives); grey lines: the best training row (dashed) "
               "and, for cosine targets, the top-k bounds (dotted)")
    md = ["# Guided optimisation report", "", intro, "", *notes, "", f"## {board.title}", ""] + [f"- {x}" for x in lines] + [""]
    md += [board.markdown(level=0), f"![{caption}](best_so_far.png)", "", f"*{caption}.*", "", "## Details", ""]
    md += [t.markdown() for t in tables]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    esc = html.escape
    body = ["<h1>Guided optimisation report</h1>", f"<p>{esc(intro)}</p>"] + [f"<p>{esc(n)}</p>" for n in notes]
    body += [f"<h2>{esc(board.title)}</h2>", "<div class='verdict'>" + "".join(f"<p>{esc(x)}</p>" for x in lines) + "</div>"]
    body += [board.html(level=0), html_figure(figure_path, caption), "<h2>Details</h2>"] + [t.html() for t in tables]
    atomic_write_text(out / "report.html", html_page("Guided optimisation report", body))
    return ReportPaths(out / "report.md", out / "report.html", figure_path)


def _ceilings(runs: list[OptimizationRun], objectives: list[str], train_data: str | None):
    from flowstudy.guidance.ceilings import compute_ceilings

    data = train_data or _train_data(runs[0].key[0])
    if data is None:
        return None
    from flowstudy.data import load_dataset

    train = _safe(load_dataset, data)
    return None if train is None else _safe(compute_ceilings, objectives, train.embeddings)


def _train_data(prior_spec: str) -> str | None:
    if prior_spec.startswith("gaussian:"):
        return prior_spec[len("gaussian:"):]
    config = Path(prior_spec) / "config.json"
    return json.loads(config.read_text()).get("data") if config.exists() else None


__all__ = [
    "best_texts_table",
    "curves",
    "final_table",
    "Finals",
    "finals",
    "find_runs",
    "leaderboard",
    "OptimizationRun",
    "plot_curves",
    "prior_name",
    "realism_table",
    "render_report",
    "ReportPaths",
    "short_objective",
    "write_report",
]
