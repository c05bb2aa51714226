"""Figures of a study report, drawn at the size they are shown (:mod:`flowstudy.reporting`).

- :func:`draw_metric_panels`: one small panel per *ranked* metric (the NLL gap first), every
  configuration's mean and 95 % CI over seeds, the Gaussian fit and real held-out data as lines.
- :func:`draw_training_curves`: validation loss against step, one look per configuration.
- :func:`draw_pca`: real held-out rows drawn over generated ones, per architecture, beside a
  panel of the Gaussian fit, on the first two principal components of the training set.
- :func:`draw_quality_vs_nfe`: ranked metrics against sampling cost.

Each ``draw_*`` returns a matplotlib Figure (or None when the study has nothing to show) so that
tests can read what was drawn; the plain-named functions save it and return the PNG's path.
Labels are the short labels of :mod:`flowstudy.study.labels`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from flowstudy.reporting import FIGURE_WIDTH_PX, figure, save, series_styles, style_axes
from flowstudy.study.labels import short_labels
from flowstudy.study.summary import header

MAX_PCA_POINTS = 500
PANEL_COLUMNS = 3
ROW_PX = 17  # height of one configuration's row in a metric panel
LEGEND_ROW_PX = 21  # height of one row of a legend in "small" type
SAMPLING_AXES = ("sample_steps", "sample_solver")
BASELINE_LOOKS = (("gaussian", "--", "Gaussian fit"), ("heldout", ":", "real held-out"))


def _errorbar(stat) -> tuple[float, float]:
    if stat.n < 2 or not math.isfinite(stat.lo):
        return 0.0, 0.0
    return stat.mean - stat.lo, stat.hi - stat.mean


# ---------------------------------------------------------------------------- metric panels
def draw_metric_panels(groups, baselines: dict[str, Any], metrics: Sequence[str], labels: dict[str, str] | None = None):
    """One panel per metric in ``metrics`` (those some group has), configurations down the side
    in ``groups``' order: mean and 95 % CI over seeds; dashed the Gaussian fit (0 for the NLL gap),
    dotted real held-out data. The value axes fit the data (they do not start at 0)."""
    metrics = [m for m in metrics if any(m in g.stats for g in groups)]
    if not metrics or not groups:
        return None
    labels = labels or short_labels(groups)
    cols = min(len(metrics), PANEL_COLUMNS)
    rows = -(-len(metrics) // cols)
    panel_px = len(groups) * ROW_PX + 70
    fig = figure(rows * panel_px + 40)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    styles = series_styles(len(groups))
    y = np.arange(len(groups))
    for ax, metric in zip(axes, metrics):
        for i, g in enumerate(groups):
            if metric not in g.stats:
                continue
            stat, style = g.stats[metric], styles[i]
            lo, hi = _errorbar(stat)
            ax.errorbar(stat.mean, i, xerr=[[lo], [hi]], fmt=style.marker, color=style.colour, markersize=4, capsize=2, linewidth=1)
        for row, linestyle, _ in BASELINE_LOOKS:
            value = _baseline_value(baselines, row, metric)
            if value is not None:
                ax.axvline(value, color="#444444", linestyle=linestyle, linewidth=1)
        ax.set_title(header(metric))
        ax.locator_params(axis="x", nbins=4)
        style_axes(ax, grid_axis="x")
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    axes[0].set_yticks(y, [labels.get(g.label, g.label) for g in groups])
    axes[0].set_ylim(len(groups) - 0.5, -0.5)  # first configuration on top
    for k, ax in enumerate(axes):
        ax.tick_params(labelleft=k % cols == 0)
    _baseline_legend(fig, baselines)
    return fig


def _baseline_value(baselines: dict[str, Any], row: str, metric: str) -> float | None:
    if metric == "nll_gap":
        return 0.0 if row == "gaussian" and "gaussian" in baselines else None
    summary = baselines.get(row)
    return summary.stats[metric].mean if summary is not None and metric in summary.stats else None


def _baseline_legend(fig, baselines: dict[str, Any]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="#444444", linestyle=s, label=text) for row, s, text in BASELINE_LOOKS if row in baselines]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize="small")


def metric_panels(groups, baselines, metrics, path: Path, labels: dict[str, str] | None = None) -> Path | None:
    """:func:`draw_metric_panels` saved to ``path``."""
    fig = draw_metric_panels(groups, baselines, metrics, labels)
    return None if fig is None else save(fig, path)


# ---------------------------------------------------------------------------- training curves
class _Config:
    """A training configuration: a group without its sampling axes (label, values)."""

    def __init__(self, label: str, values: dict[str, Any]):
        self.label, self.values = label, values


def training_configs(results: list[dict[str, Any]], values: dict[str, dict[str, Any]]) -> dict[str, _Config]:
    """group -> its training configuration: groups that differ only in sampling share one."""
    out: dict[str, _Config] = {}
    by_key: dict[str, _Config] = {}
    for r in results:
        group_values = {k: v for k, v in values.get(r["group"], {}).items() if k not in SAMPLING_AXES}
        key = json.dumps(group_values, sort_keys=True, default=str)
        out[r["group"]] = by_key.setdefault(key, _Config(_train_label(r["group"]), group_values))
    return out


def draw_training_curves(curves: dict[str, list[list[tuple[int, float]]]], labels: dict[str, str]):
    """Validation loss against optimiser step: ``curves`` maps a configuration to its seeds' curves;
    one look (colour, line style) per configuration, one line per seed, the legend below."""
    if not curves:
        return None
    styles = series_styles(len(curves))
    columns = 2 if len(curves) <= 8 else 3
    fig = figure(330 + LEGEND_ROW_PX * -(-len(curves) // columns))
    ax = fig.subplots()
    for style, (config, runs) in zip(styles, curves.items()):
        for k, curve in enumerate(runs):
            steps, losses = zip(*curve)
            ax.plot(steps, losses, color=style.colour, linestyle=style.linestyle, linewidth=1.2, alpha=0.85,
                    label=labels.get(config, config) if k == 0 else None)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("validation loss (EMA weights)")
    style_axes(ax)
    fig.legend(loc="outside lower center", ncols=columns, frameon=False, fontsize="small")
    return fig


def training_curves(study_dir: Path, results: list[dict[str, Any]], path: Path, values: dict[str, dict[str, Any]] | None = None) -> Path | None:
    """Each run's validation curve (``runs/RUN/metrics.jsonl``), drawn by :func:`draw_training_curves`."""
    configs = training_configs(results, values or {})
    curves: dict[str, list] = {}
    seen = set()
    for r in results:
        if r["run"] in seen:
            continue
        seen.add(r["run"])
        curve = read_val_curve(study_dir / "runs" / r["run"] / "metrics.jsonl")
        if curve:
            curves.setdefault(configs[r["group"]].label, []).append(curve)
    unique = {c.label: c for c in configs.values() if c.label in curves}
    fig = draw_training_curves(curves, short_labels(list(unique.values())))
    return None if fig is None else save(fig, path)


def _train_label(group: str) -> str:
    """The group label without sampling-axis parts: curves belong to training runs."""
    return "/".join(p for p in group.split("/") if not p.startswith(tuple(f"{a}=" for a in SAMPLING_AXES))) or group


def read_val_curve(path: Path) -> list[tuple[int, float]]:
    """(step, val_loss) pairs of a run's metrics.jsonl (empty when the file is missing)."""
    if not path.exists():
        return []
    curve = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("val_loss") is not None:
                curve.append((int(record["step"]), float(record["val_loss"])))
    return curve


# ---------------------------------------------------------------------------- PCA
def pca_panels(study_dir: Path, results: list[dict[str, Any]], path: Path) -> Path | None:
    """Per architecture (its first cell in study order, preferring one trained on the full data):
    generated samples under real held-out rows, beside the Gaussian fit, on the first two principal
    components of the standardised full training set (:func:`draw_pca`)."""
    chosen: dict[str, dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: r.get("subset") is not None):
        if r["arch"] not in chosen and (study_dir / "cells" / r["id"] / "samples.npy").exists():
            chosen[r["arch"]] = r
    if not chosen:
        return None
    space = _pca_space(study_dir, next(iter(chosen.values())))
    panels = {}
    for arch, r in chosen.items():
        samples = np.load(study_dir / "cells" / r["id"] / "samples.npy")[:MAX_PCA_POINTS]
        which = f"seed {r['seed']}" if r["group"] == arch else f"{r['group']}, seed {r['seed']}"
        panels[f"{arch} ({which})"[:40]] = space["project_original"](samples)
    panels["Gaussian fit (baseline)"] = space["gaussian"]
    return save(draw_pca(space["heldout"], panels), path)


def draw_pca(heldout: np.ndarray, panels: dict[str, np.ndarray]):
    """One panel per entry of ``panels`` (title -> generated points [n, 2]): generated in colour
    beneath the real held-out rows [m, 2] in dark grey, sharing axes."""
    n = len(panels)
    cols = min(n, PANEL_COLUMNS)
    rows = -(-n // cols)
    width = FIGURE_WIDTH_PX
    fig = figure(rows * (width // cols) + 30)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax, (title, points) in zip(axes, panels.items()):
        ax.scatter(points[:, 0], points[:, 1], s=5, color="#d55e00", alpha=0.45, linewidths=0, label="samples (model or Gaussian fit)", zorder=1)
        ax.scatter(heldout[:, 0], heldout[:, 1], s=5, color="#1f2328", alpha=0.7, linewidths=0, label="real held-out", zorder=2)
        ax.set_title(title)
        style_axes(ax)
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[:n]:
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel("PC 1")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("PC 2")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=2, frameon=False, fontsize="small", markerscale=2)
    return fig


def _pca_space(study_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """PCA (top 2) of the z-scored full training set of the run's data: a projection of rows in the
    original space, the held-out rows and 500 draws of the training set's Gaussian fit projected."""
    import torch

    from flowstudy.data import Standardizer
    from flowstudy.data.resolve import load_train_val
    from flowstudy.metrics.baselines import gaussian_baseline

    config = json.loads((study_dir / "runs" / result["run"] / "config.json").read_text())
    train, heldout = load_train_val(config["data"], config.get("val"), split_seed=config.get("seed", 0))
    space = Standardizer.fit(torch.from_numpy(train.embeddings), floor_ratio=config.get("std_floor", 0.1))

    def standardise(x: np.ndarray) -> np.ndarray:
        return space.transform(torch.from_numpy(np.asarray(x)).double()).numpy()

    z = standardise(train.embeddings)  # [N, D]
    centre = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - centre, full_matrices=False)
    components = vt[:2].T  # [D, 2]
    fit = gaussian_baseline(torch.from_numpy(z), MAX_PCA_POINTS, np.random.default_rng(0)).numpy()  # [n, D], standardised

    def project_original(x: np.ndarray) -> np.ndarray:
        return (standardise(x) - centre) @ components  # [n, 2]

    return {
        "project_original": project_original,
        "heldout": project_original(heldout.embeddings),
        "gaussian": (fit - centre) @ components,
    }


# ---------------------------------------------------------------------------- quality vs NFE
def draw_quality_vs_nfe(groups, baselines: dict[str, Any], metrics: Sequence[str]):
    """Each ranked metric (mean, 95 % CI over seeds) against sampling NFE, one look per trained
    configuration; None unless some configuration was sampled at two NFEs or more."""
    lines: dict[str, list] = {}
    configs: dict[str, _Config] = {}
    for g in groups:
        if "nfe" in g.stats:
            trained = {k: v for k, v in g.values.items() if k not in SAMPLING_AXES}
            label = json.dumps(trained, sort_keys=True, default=str) if trained else _train_label(g.label)
            lines.setdefault(label, []).append(g)
            configs.setdefault(label, _Config(label, trained))
    labels = short_labels(list(configs.values()))
    metrics = [m for m in metrics if any(m in g.stats for g in groups)]
    if not any(len(v) >= 2 for v in lines.values()) or not metrics:
        return None
    cols = min(len(metrics), PANEL_COLUMNS)
    rows = -(-len(metrics) // cols)
    fig = figure(rows * 200 + 30 + LEGEND_ROW_PX * -(-len(lines) // 2))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    styles = series_styles(len(lines))
    for ax, metric in zip(axes, metrics):
        for style, (label, members) in zip(styles, lines.items()):
            members = sorted((g for g in members if metric in g.stats), key=lambda g: g.stats["nfe"].mean)
            err = np.array([_errorbar(g.stats[metric]) for g in members]).T.reshape(2, -1)
            ax.errorbar([g.stats["nfe"].mean for g in members], [g.stats[metric].mean for g in members], yerr=err,
                        color=style.colour, linestyle=style.linestyle, marker=style.marker, markersize=4, capsize=2,
                        label=labels[label] if ax is axes[0] else None)
        for row, linestyle, _ in BASELINE_LOOKS:
            value = _baseline_value(baselines, row, metric)
            if value is not None:
                ax.axhline(value, color="#444444", linestyle=linestyle, linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFE per sample")
        ax.set_title(header(metric))
        style_axes(ax)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.legend(loc="outside lower center", ncols=2, frameon=False, fontsize="small")
    return fig


def quality_vs_nfe(groups, baselines, metrics, path: Path) -> Path | None:
    """:func:`draw_quality_vs_nfe` saved to ``path``."""
    fig = draw_quality_vs_nfe(groups, baselines, metrics)
    return None if fig is None else save(fig, path)


__all__ = [
    "draw_metric_panels",
    "draw_pca",
    "draw_quality_vs_nfe",
    "draw_training_curves",
    "metric_panels",
    "pca_panels",
    "quality_vs_nfe",
    "read_val_curve",
    "training_configs",
    "training_curves",
]
