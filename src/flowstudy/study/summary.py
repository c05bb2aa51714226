"""Summaries of a study's results over seeds: per configuration, per baseline, against a reference.

Rows are *configurations*: the cells of one group differ only by seed. Each metric is
summarised by its mean over seeds and 95 % Student-t interval (:func:`flowstudy.metrics.mean_ci`).
"Better" is direction-aware (:data:`DIRECTIONS`): each metric has a distance from its ideal,
lower is better, judged on the mean over seeds.

Significance against a reference configuration: for each other configuration and metric, a
paired test across seeds (:func:`flowstudy.metrics.paired_test`) on the distance from the
ideal, Holm-corrected over the configurations compared on that metric
(:func:`flowstudy.metrics.holm`).

Which metrics rank. A sample metric ranks configurations only if it passes the baseline
sanity check (:mod:`flowstudy.metrics.sanity`: real < Gaussian fit < noise) in every cell of
the study (:func:`ranked_metrics`); the others are shown but not ranked. Held-out NLL, when the
study computes it, always ranks and decides whether a configuration beats the Gaussian fit.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from flowstudy.errors import ConfigError
from flowstudy.metrics.table import BADNESS, FLAGGED_METRICS

BASELINE_ROWS = ("gaussian", "noise", "copies", "heldout")
BASELINE_NAMES = {
    "gaussian": "Gaussian fit",
    "noise": "noise N(0, I)",
    "copies": "training copies",
    "heldout": "real held-out",
}
QUALITY_METRICS = (
    "nll", "nll_gap", "fidelity", "novelty", "c2st_auc", "c2st_knn_auc", "mmd", "density", "coverage", "frechet", "norm_ratio",
    "original_norm_ratio",
)
ALWAYS_RANKED = ("nll", "nll_gap")
"""Metrics that rank without a sanity check (a proper scoring rule of held-out rows)."""
COST_METRICS = ("best_val_loss", "straightness", "train_steps", "train_seconds", "nfe", "samples_per_s")


def _lower(v: float) -> float:
    return v


DIRECTIONS: dict[str, tuple[Callable[[float], float], str]] = {
    "nll": (_lower, "lower is better; held-out negative log-likelihood, nats per dimension of the original space"),
    "nll_gap": (_lower, "lower is better; held-out NLL minus the Gaussian fit's, nats per dimension (below 0: beats the fit)"),
    "fidelity": (BADNESS["fidelity"], "closer to 1 is better (|log x|); 1 = samples lie as near held-out data as real data do"),
    "novelty": (lambda v: max(1.0 - v, 0.0), "higher is better up to 1 (real data); 0 = copies of training rows"),
    "c2st_auc": (BADNESS["c2st_auc"], "closer to 0.5 is better (|x - 0.5|); 0.5 = a linear classifier cannot tell samples from data"),
    "c2st_knn_auc": (BADNESS["c2st_knn_auc"], "closer to 0.5 is better (|x - 0.5|); the same with a cosine 10-nearest-neighbour classifier"),
    "mmd": (BADNESS["mmd"], "lower is better; 0 = same distribution (small negative values are noise around 0)"),
    "density": (BADNESS["density"], "closer to 1 is better (|log x|)"),
    "coverage": (BADNESS["coverage"], "higher is better; 1 = every held-out row has a sample nearby"),
    "frechet": (BADNESS["frechet"], "lower is better; biased upwards at small N: compare with the held-out row"),
    "norm_ratio": (
        BADNESS["norm_ratio"],
        "closer to 1 is better (|log x|); mean row norm of samples over held-out rows' (standardised space): "
        "below 1, samples shrink toward the mean, which nearest-neighbour metrics can reward",
    ),
    "original_norm_ratio": (
        BADNESS["norm_ratio"],
        "closer to 1 is better (|log x|); the same ratio in the original embedding space, where a decoder reads it",
    ),
    "best_val_loss": (_lower, "lower is better (flow-matching loss on held-out rows)"),
    "straightness": (_lower, "lower is better; 0 = straight paths (Liu et al. 2023)"),
    "train_steps": (_lower, "optimiser steps trained"),
    "train_seconds": (_lower, "lower is better"),
    "nfe": (_lower, "network evaluations per sample; lower is cheaper"),
    "samples_per_s": (lambda v: -v, "higher is better"),
}
"""Metric -> (distance from the ideal: lower is better, what the reader should know)."""

MARKS = {
    "nll": "↓", "nll_gap": "↓", "fidelity": "→1", "novelty": "↑ to 1", "c2st_auc": "→0.5", "c2st_knn_auc": "→0.5",
    "mmd": "↓", "density": "→1", "coverage": "↑", "frechet": "↓", "norm_ratio": "→1", "original_norm_ratio": "→1",
    "best_val_loss": "↓", "straightness": "↓", "train_seconds": "↓", "nfe": "↓", "samples_per_s": "↑",
}
"""Metric -> its direction mark for table headers: ↓ lower is better, ↑ higher, →x nearer x."""
NAMES = {
    "nll": "NLL", "nll_gap": "NLL gap", "c2st_auc": "linear C2ST AUC", "c2st_knn_auc": "kNN C2ST AUC", "mmd": "MMD",
    "frechet": "Fréchet", "norm_ratio": "norm ratio", "original_norm_ratio": "norm ratio (original)",
    "best_val_loss": "val loss", "train_seconds": "train s", "samples_per_s": "samples/s", "nfe": "NFE",
    "train_steps": "steps",
}
"""Metric -> its name in table headers and figure titles (others: the metric's own name)."""


def header(metric: str) -> str:
    """"NLL gap ↓", "fidelity →1": a metric's name and direction mark."""
    return f"{NAMES.get(metric, metric)} {MARKS[metric]}".strip() if metric in MARKS else NAMES.get(metric, metric)

_NOT_RANKED = ("train_steps",)
TWO_SIDED_IDEALS = {"fidelity": 1.0, "c2st_auc": 0.5, "c2st_knn_auc": 0.5, "density": 1.0, "norm_ratio": 1.0, "original_norm_ratio": 1.0}
"""Metrics whose distance falls toward an ideal value and rises past it, with that value."""


# ----------------------------------------------------------------------------- summaries
@dataclass
class GroupSummary:
    """One configuration (or baseline) over seeds.

    values: axis -> value; per_seed: metric -> {seed: value}; stats: metric -> MeanCI.
    """

    label: str
    values: dict[str, Any]
    seeds: list[int]
    per_seed: dict[str, dict[int, float]]
    stats: dict[str, Any]
    beats_gaussian: tuple[int, int] = (0, 0)
    data_key: tuple = ()
    ids: list[str] = field(default_factory=list)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _stats(per_seed: dict[str, dict[int, float]]) -> dict[str, Any]:
    from flowstudy.metrics import mean_ci

    return {m: mean_ci(list(v.values())) for m, v in per_seed.items() if v}


def _data_key(r: dict[str, Any]) -> tuple:
    return (r.get("data"), r.get("n_samples"), r.get("eval_seed"))


def summarize_groups(
    results: list[dict[str, Any]], metrics: Sequence[str], values: dict[str, dict[str, Any]] | None = None
) -> list[GroupSummary]:
    """Group ``results`` by their ``group`` (first-seen order) and summarise ``metrics`` over seeds.

    values: optional group -> axis values (else taken from the group's first result).
    """
    groups: dict[str, GroupSummary] = {}
    for r in results:
        g = groups.get(r["group"])
        if g is None:
            axis_values = (values or {}).get(r["group"], {})
            g = groups[r["group"]] = GroupSummary(r["group"], dict(axis_values), [], {m: {} for m in metrics}, {})
            g.data_key = _data_key(r)
        g.seeds.append(r["seed"])
        g.ids.append(r["id"])
        for m in metrics:
            if _finite(r.get(m)):
                g.per_seed[m][r["seed"]] = float(r[m])
        if r.get("beats_gaussian") is not None:
            won, total = g.beats_gaussian
            g.beats_gaussian = (won + int(bool(r["beats_gaussian"])), total + 1)
    for g in groups.values():
        g.stats = _stats(g.per_seed)
    return list(groups.values())


def summarize_baselines(results: list[dict[str, Any]], metrics: Sequence[str]) -> dict[tuple, dict[str, GroupSummary]]:
    """data key -> baseline row -> summary over seeds.

    Cells with the same data, sample count and eval seed see the same baselines (up to the
    held-out split, which follows the seed when no val set is given), so each seed counts once.
    """
    out: dict[tuple, dict[str, GroupSummary]] = {}
    for r in results:
        rows = out.setdefault(_data_key(r), {})
        for row in BASELINE_ROWS:
            g = rows.get(row)
            if g is None:
                g = rows[row] = GroupSummary(BASELINE_NAMES[row], {}, [], {m: {} for m in metrics}, {}, data_key=_data_key(r))
            if r["seed"] not in g.seeds:
                g.seeds.append(r["seed"])
            for m in metrics:
                v = r.get(f"baseline_{row}_{m}")
                if _finite(v) and r["seed"] not in g.per_seed[m]:
                    g.per_seed[m][r["seed"]] = float(v)
    for rows in out.values():
        for row in list(rows):
            rows[row].stats = _stats(rows[row].per_seed)
            if not rows[row].stats:
                del rows[row]
    return out


def badness(metric: str, value: float) -> float:
    """Distance of ``value`` from ``metric``'s ideal (lower is better; see :data:`DIRECTIONS`)."""
    fn = DIRECTIONS.get(metric, (_lower, ""))[0]
    return fn(value)


def ranked_metrics(results: list[dict[str, Any]], metrics: Sequence[str]) -> list[str] | None:
    """The ``metrics`` that may rank configurations: those that pass the sanity check in every
    result (``sanity_<metric>`` = 1), and :data:`ALWAYS_RANKED`. None for results from before
    the check (no ``sanity_*`` field at all): every metric ranks, the fixed pair flags."""
    if not any(k.startswith("sanity_") for r in results for k in r):
        return None
    out = []
    for m in metrics:
        checks = [r.get(f"sanity_{m}") for r in results]
        always = m in ALWAYS_RANKED and any(_finite(r.get(m)) for r in results)
        if always or (checks and all(c == 1 for c in checks)):
            out.append(m)
    return out


def sanity_summary(results: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, tuple[int, int, float]]:
    """metric -> (cells passing, cells checked, smallest margin in CI half-widths over cells)."""
    out = {}
    for m in metrics:
        checks = [(r[f"sanity_{m}"], r.get(f"sanity_margin_{m}")) for r in results if r.get(f"sanity_{m}") is not None]
        if checks:
            margins = [v for _, v in checks if _finite(v)]
            out[m] = (sum(int(c) for c, _ in checks), len(checks), min(margins) if margins else math.nan)
    return out


def best_labels(groups: Sequence[GroupSummary], metric: str) -> set[str]:
    """Labels of the configurations whose mean is nearest the ideal of ``metric`` (ties: all)."""
    scored = [(badness(metric, g.stats[metric].mean), g.label) for g in groups if metric in g.stats]
    if len(scored) < 2 or metric in _NOT_RANKED:
        return set()
    best = min(s for s, _ in scored)
    return {label for s, label in scored if s <= best + 1e-12 * max(1.0, abs(best))}


def badness_range(metric: str, stat) -> tuple[float, float]:
    """(nearest, farthest) distance from the ideal over the 95 % interval of ``stat`` (a MeanCI);
    (d, d) of the mean when there is no interval (one seed).

    Every distance of :data:`DIRECTIONS` is monotone or V-shaped in the value (x, max(1 - x, 0),
    |log x|, |x - 0.5|), so the farthest point of [lo, hi] is an end; the nearest is 0 when a
    V-shaped metric's ideal (:data:`TWO_SIDED_IDEALS`) lies inside, else the nearer end."""
    if stat.n < 2 or not (math.isfinite(stat.lo) and math.isfinite(stat.hi)):
        d = badness(metric, stat.mean)
        return d, d
    ends = (badness(metric, stat.lo), badness(metric, stat.hi))
    ideal = TWO_SIDED_IDEALS.get(metric)
    nearest = 0.0 if ideal is not None and stat.lo <= ideal <= stat.hi else min(ends)
    return nearest, max(ends)


def separated_best(groups: Sequence[GroupSummary], metric: str) -> tuple[str | None, str | None, bool]:
    """(best, next, separated) on ``metric``: the configuration whose mean is nearest the ideal, the
    runner-up, and whether the best's whole 95 % interval is nearer the ideal than the runner-up's.

    One seed gives no interval, so nothing separates. Novelty above 1 (samples farther from the
    training rows than real data are: off the data) is never a winner."""
    scored = sorted((badness(metric, g.stats[metric].mean), i) for i, g in enumerate(groups) if metric in g.stats)
    if not scored or metric in _NOT_RANKED:
        return None, None, False
    best = groups[scored[0][1]]
    if len(scored) < 2:
        return best.label, None, False
    runner = groups[scored[1][1]]
    if metric == "novelty" and best.stats[metric].mean > 1.0:
        return best.label, runner.label, False
    a, b = best.stats[metric], runner.stats[metric]
    if a.n < 2 or b.n < 2:
        return best.label, runner.label, False
    return best.label, runner.label, badness_range(metric, a)[1] < badness_range(metric, b)[0]


def gaussian_wins(group: GroupSummary, gaussian: GroupSummary | None, metrics: Sequence[str]) -> tuple[int, int]:
    """(k, n): on k of the n ``metrics`` that both rows have, the configuration beats the Gaussian
    fit: its whole 95 % interval (its mean, with one seed) is nearer the ideal than the fit's mean.
    The fit's NLL gap is 0 by definition. Novelty is judged as each cell's verdict judges it
    (:data:`flowstudy.metrics.table.BADNESS`: |log x|, nearer 1 from either side), since above 1
    every value ties in the ranking's distance."""
    won = total = 0
    for m in metrics:
        if m not in group.stats:
            continue
        if m == "nll_gap":
            reference = 0.0
        elif gaussian is not None and m in gaussian.stats:
            reference = _verdict_badness(m, gaussian.stats[m].mean)
        else:
            continue
        total += 1
        stat = group.stats[m]
        ends = (stat.mean,) if stat.n < 2 or not math.isfinite(stat.lo) else (stat.lo, stat.hi)
        won += max(_verdict_badness(m, v) for v in ends) < reference
    return won, total


def _verdict_badness(metric: str, value: float) -> float:
    return BADNESS["novelty"](value) if metric == "novelty" else badness(metric, value)


def gaussian_flags(group: GroupSummary, gaussian: GroupSummary | None, ranked: Sequence[str] | None = None) -> list[str]:
    """Metrics on which the configuration's mean is not nearer the ideal than the Gaussian fit's:
    NLL alone when both have it, else the ``ranked`` metrics (default :data:`FLAGGED_METRICS`)."""
    if gaussian is None:
        return []
    if "nll" in group.stats and "nll" in gaussian.stats:
        return ["nll"] if group.stats["nll"].mean >= gaussian.stats["nll"].mean else []
    return [
        m
        for m in (FLAGGED_METRICS if ranked is None else ranked)
        if m in group.stats and m in gaussian.stats
        and badness(m, group.stats[m].mean) >= badness(m, gaussian.stats[m].mean)
    ]


# ----------------------------------------------------------------------------- significance
@dataclass(frozen=True)
class Comparison:
    """A configuration against the reference on one metric, paired by seed.

    mean_difference: mean over seeds of badness(group) - badness(reference); negative means
    the configuration is nearer the ideal. p_holm: Holm-adjusted over the configurations
    compared on this metric.
    """

    group: str
    metric: str
    test: str
    n: int
    mean_difference: float
    pvalue: float
    p_holm: float


def find_group(groups: Sequence[GroupSummary], name: str) -> GroupSummary:
    """The group called ``name``: its exact label, or ``axis=value[,axis=value]`` matching one group."""
    for g in groups:
        if g.label == name:
            return g
    wanted = dict(part.split("=", 1) for part in name.split(",") if "=" in part) if "=" in name else {}
    matches = [g for g in groups if wanted and all(format_value(k, g.values.get(k)) == v for k, v in wanted.items())]
    if len(matches) == 1:
        return matches[0]
    labels = ", ".join(g.label for g in groups)
    what = "matches several configurations" if matches else "names no configuration"
    raise ConfigError(f"reference {name!r} {what}; configurations: {labels}")


def compare_to_reference(groups: Sequence[GroupSummary], reference: str, metrics: Sequence[str]) -> list[Comparison]:
    """Paired tests of every other configuration against ``reference`` (see module docstring)."""
    from flowstudy.metrics import holm, paired_test

    ref = find_group(groups, reference)
    out: list[Comparison] = []
    for metric in metrics:
        rows = []
        for g in groups:
            if g is ref or metric not in ref.per_seed:
                continue
            seeds = sorted(set(g.per_seed.get(metric, {})) & set(ref.per_seed[metric]))
            if len(seeds) < 2:
                continue
            a = [badness(metric, g.per_seed[metric][s]) for s in seeds]
            b = [badness(metric, ref.per_seed[metric][s]) for s in seeds]
            if not all(map(math.isfinite, a + b)):  # e.g. density 0: infinitely far from 1, no test
                continue
            with warnings.catch_warnings():  # near-identical pairs: scipy warns, the p-value stands
                warnings.simplefilter("ignore", RuntimeWarning)
                rows.append((g.label, paired_test(a, b)))
        if not rows:
            continue
        adjusted = holm([t.pvalue for _, t in rows])
        out += [Comparison(label, metric, t.test, t.n, t.mean_difference, t.pvalue, float(p)) for (label, t), p in zip(rows, adjusted)]
    return out


def format_value(axis: str, value: Any) -> str:
    """How an axis value is shown: None is the full data set for ``subset``, else the default."""
    if value is None:
        return "full" if axis == "subset" else "default"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


__all__ = [
    "ALWAYS_RANKED",
    "BASELINE_ROWS",
    "BASELINE_NAMES",
    "COST_METRICS",
    "DIRECTIONS",
    "MARKS",
    "NAMES",
    "QUALITY_METRICS",
    "Comparison",
    "GroupSummary",
    "badness",
    "badness_range",
    "best_labels",
    "compare_to_reference",
    "find_group",
    "format_value",
    "gaussian_flags",
    "gaussian_wins",
    "header",
    "ranked_metrics",
    "sanity_summary",
    "separated_best",
    "summarize_baselines",
    "summarize_groups",
]
