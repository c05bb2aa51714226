"""The verdict a study report opens with: a leaderboard against the Gaussian fit.

For each configuration, the metrics that decide (:func:`leaderboard_metrics`: the held-out NLL gap
to the Gaussian fit first where the study computes it, then the sample metrics that pass the
baseline sanity check), each as mean [95 % CI] over seeds; how many of them it beats the Gaussian
fit on (:func:`flowstudy.study.summary.gaussian_wins`); bold only where a configuration is
*significantly* best: its whole interval nearer the ideal than the runner-up's
(:func:`flowstudy.study.summary.separated_best`). The winner is named only when it is separated.

Rows are ordered by the NLL gap where present, else by the mean rank over the leaderboard metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from flowstudy.reporting import Table, fmt
from flowstudy.study.summary import (
    GroupSummary,
    badness,
    gaussian_wins,
    header,
    separated_best,
)

LEGACY_METRICS = ("fidelity", "novelty", "c2st_auc", "density", "coverage")
"""What the leaderboard shows for studies recorded before the sanity check existed."""
NOT_IN_LEADERBOARD = ("nll",)
"""Ranked, but shown through the NLL gap (the same ranking, read against the Gaussian fit)."""


def leaderboard_metrics(groups: Sequence[GroupSummary], ranked: Sequence[str] | None) -> list[str]:
    """The metrics that decide, NLL gap first: ``ranked`` (or :data:`LEGACY_METRICS` when None)
    that some configuration has, without the raw NLL."""
    pool = list(ranked) if ranked is not None else list(LEGACY_METRICS)
    if any("nll_gap" in g.stats for g in groups) and "nll_gap" not in pool:
        pool.insert(0, "nll_gap")
    pool.sort(key=lambda m: m != "nll_gap")
    return [m for m in pool if m not in NOT_IN_LEADERBOARD and any(m in g.stats for g in groups)]


@dataclass(frozen=True)
class Verdict:
    """The leaderboard's content: configurations in order, the metrics, per-metric winners.

    winners: metric -> (best label, runner-up label, separated); wins: label -> (k, n) ranked
    metrics on which it beats the Gaussian fit."""

    metrics: list[str]
    order: list[GroupSummary]
    winners: dict[str, tuple[str | None, str | None, bool]]
    wins: dict[str, tuple[int, int]]

    @property
    def primary(self) -> str | None:
        """The metric that names the overall winner: the NLL gap where present, else none."""
        return "nll_gap" if "nll_gap" in self.metrics else None


def verdict(groups: Sequence[GroupSummary], gaussian: GroupSummary | None, ranked: Sequence[str] | None) -> Verdict:
    """Order, winners and wins against the Gaussian fit of ``groups`` (one data key)."""
    metrics = leaderboard_metrics(groups, ranked)
    winners = {m: separated_best(groups, m) for m in metrics}
    wins = {g.label: gaussian_wins(g, gaussian, metrics) for g in groups}
    return Verdict(metrics, _order(groups, metrics), winners, wins)


def _order(groups: Sequence[GroupSummary], metrics: list[str]) -> list[GroupSummary]:
    if not metrics:
        return list(groups)
    if "nll_gap" in metrics:
        return sorted(groups, key=lambda g: g.stats["nll_gap"].mean if "nll_gap" in g.stats else math.inf)
    ranks: dict[str, list[int]] = {g.label: [] for g in groups}
    for m in metrics:
        have = sorted((g for g in groups if m in g.stats), key=lambda g: badness(m, g.stats[m].mean))
        for r, g in enumerate(have):
            ranks[g.label].append(r)
    return sorted(groups, key=lambda g: sum(ranks[g.label]) / len(ranks[g.label]) if ranks[g.label] else math.inf)


def wins_text(k: int, n: int) -> str:
    """"all 6", "4 of 6", "none of 6", "–" (nothing to compare)."""
    if n == 0:
        return "–"
    return f"all {n}" if k == n else ("none of " if k == 0 else f"{k} of ") + str(n)


def leaderboard_table(
    v: Verdict, labels: dict[str, str], baselines: dict[str, GroupSummary], format_ci, title: str = "Leaderboard"
) -> Table:
    """The leaderboard as a :class:`~flowstudy.reporting.Table`: configurations, then the Gaussian
    fit and real held-out rows; ``format_ci`` renders one MeanCI."""
    headers = ["configuration", "seeds", "beats Gaussian fit on"] + [header(m) for m in v.metrics]
    rows, best = [], set()
    for i, g in enumerate(v.order):
        row = [labels.get(g.label, g.label), str(len(g.seeds)), wins_text(*v.wins[g.label])]
        rows.append(row + [format_ci(g.stats[m]) if m in g.stats else "–" for m in v.metrics])
        best |= {(i, 3 + j) for j, m in enumerate(v.metrics) if v.winners[m][2] and v.winners[m][0] == g.label}
    separator = len(rows)
    for key, name in (("gaussian", "Gaussian fit (baseline)"), ("heldout", "real held-out data")):
        b = baselines.get(key)
        if b is None:
            continue
        cells = ["0" if m == "nll_gap" else (format_ci(b.stats[m]) if m in b.stats else "–") for m in v.metrics]
        rows.append([name, str(len(b.seeds)), ""] + cells)
    note = (
        "Mean [95 % CI] over seeds. Bold: significantly best (its whole interval nearer the ideal than the "
        "runner-up's). Beats the Gaussian fit: the whole interval (one seed: the value) nearer the ideal than the fit's. "
        "↓ lower is better, ↑ higher, →x nearer x."
    )
    return Table(title, headers, rows, best, separator if separator < len(rows) else None, note)


def _leader_text(metric: str, best: str, by_label: dict[str, GroupSummary], name) -> str:
    value = by_label[best].stats[metric].mean
    if metric == "novelty" and value > 1:
        return "leading values above 1 all tie: off the data"
    return f"leading: {name(best)}, {fmt(value)}"


def verdict_lines(v: Verdict, labels: dict[str, str], format_ci) -> list[str]:
    """The sentences above the leaderboard: the winner (or why none is named), then how many
    configurations beat the Gaussian fit."""
    lines = []
    by_label = {g.label: g for g in v.order}
    name = lambda label: labels.get(label, label)  # noqa: E731
    if v.primary:
        best, runner, separated = v.winners[v.primary]
        if best is not None:
            gap = format_ci(by_label[best].stats["nll_gap"])
            if runner is None:
                lines.append(f"Only configuration with a held-out NLL: {name(best)} (gap {gap} nats/dim to the Gaussian fit).")
            elif separated:
                nxt = format_ci(by_label[runner].stats["nll_gap"])
                lines.append(
                    f"Winner by held-out NLL: {name(best)}, gap {gap} nats/dim to the Gaussian fit; its interval is clear "
                    f"of the runner-up, {name(runner)} ({nxt})."
                )
            else:
                lines.append(
                    f"No single winner by held-out NLL: the best, {name(best)} ({gap} nats/dim), and the runner-up, "
                    f"{name(runner)} ({format_ci(by_label[runner].stats['nll_gap'])}), overlap."
                )
    clear = [f"{header(m)}: {name(b)}" for m, (b, _, sep) in v.winners.items() if sep and m != v.primary]
    tied = [f"{header(m)} ({_leader_text(m, b, by_label, name)})" for m, (b, r, sep) in v.winners.items()
            if not sep and r is not None and m != v.primary]
    if clear:
        lines.append("Significantly best: " + "; ".join(clear) + ".")
    if tied:
        lines.append("No configuration is clear of the runner-up on " + "; ".join(tied) + ".")
    n = len(v.order)
    full = [g for g in v.order if v.wins[g.label][1] and v.wins[g.label][0] == v.wins[g.label][1]]
    none = [g for g in v.order if v.wins[g.label][1] and v.wins[g.label][0] == 0]
    total = max((t for _, t in v.wins.values()), default=0)
    if total:
        lines.append(
            f"{len(full)} of {n} configurations beat the Gaussian fit on all {total} ranked metrics"
            + (f"; {len(none)} beat it on none" if none else "")
            + "."
        )
    return lines


__all__ = ["LEGACY_METRICS", "Verdict", "leaderboard_metrics", "leaderboard_table", "verdict", "verdict_lines", "wins_text"]
