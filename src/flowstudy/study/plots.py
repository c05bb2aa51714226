"""Figures of a study report, drawn with matplotlib's object API on the Agg canvas.

No pyplot and no backend switch: a report can be written from any process (a worker, a
notebook with its own backend) without touching global matplotlib state. Each function
writes one PNG and returns its path, or None when the study has nothing to show for it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from flowstudy.study.summary import format_value

BAR_METRICS = ("fidelity", "c2st_auc", "mmd", "coverage")
NFE_METRICS = ("fidelity", "c2st_auc", "mmd")
DPI = 110
MAX_PCA_POINTS = 500
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("study reports draw their figures with matplotlib: pip install 'flowstudy[plot]'") from err
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _sorted_values(values: list[Any]) -> list[Any]:
    """Numbers ascending (None last), anything else in first-seen order."""
    unique: list[Any] = []
    for v in values:
        if v not in unique:
            unique.append(v)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in unique):
        return sorted(unique, key=lambda v: (v is None, v if v is not None else 0))
    return unique


def _errorbar(stat) -> tuple[float, float]:
    if stat.n < 2 or not math.isfinite(stat.lo):
        return 0.0, 0.0
    return stat.mean - stat.lo, stat.hi - stat.mean


# ---------------------------------------------------------------------------- metric bars
def metric_bars(groups, baselines: dict[str, Any], axis: str, path: Path, metrics: Sequence[str] = BAR_METRICS) -> Path | None:
    """Mean and 95 % CI over seeds of each configuration, along ``axis``.

    x: the axis's values; at each x one bar per configuration that has it, coloured by the
    values of the other axes. Dashed / dotted lines: the Gaussian fit and real held-out data.
    """
    metrics = [m for m in metrics if any(m in g.stats for g in groups)]
    xs = _sorted_values([g.values.get(axis) for g in groups])
    if len(xs) < 2 or not metrics:
        return None
    varying = varying_axes(groups)
    hue_of = {g.label: _hue_label(g, axis, varying) for g in groups}
    hues = list(dict.fromkeys(hue_of.values()))
    colour = {h: _PALETTE[i % len(_PALETTE)] for i, h in enumerate(hues)}
    fig = _figure(3.6 * len(metrics) + 1.5, 3.6)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for i, x in enumerate(xs):
            here = [g for g in groups if g.values.get(axis) == x and metric in g.stats]
            width = 0.8 / max(len(here), 1)
            for j, g in enumerate(here):
                stat = g.stats[metric]
                lo, hi = _errorbar(stat)
                pos = i - 0.4 + width * (j + 0.5)
                yerr = [[lo], [hi]] if stat.n > 1 else None  # one seed: no interval to draw
                ax.bar(pos, stat.mean, width * 0.9, color=colour[hue_of[g.label]], yerr=yerr, capsize=2)
        _reference_lines(ax, baselines, metric)
        ax.set_xticks(range(len(xs)), [format_value(axis, x) for x in xs], rotation=30 if len(xs) > 4 else 0)
        ax.set_title(metric)
        ax.set_xlabel(axis)
    handles = [_patch(colour[h], h) for h in hues] if len(hues) > 1 else []
    handles += _baseline_handles(baselines)
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    fig.suptitle(f"Metrics along '{axis}' (mean and 95 % CI over seeds)")
    return _save(fig, path)


def _hue_label(group, axis: str, varying: list[str]) -> str:
    """The group's values of the other axes that vary in the study ("icfm/subset=full")."""
    parts = []
    for other in varying:
        if other != axis:
            value = group.values.get(other)
            parts.append(value if isinstance(value, str) else f"{other}={format_value(other, value)}")
    return "/".join(parts) or "all"


def varying_axes(groups) -> list[str]:
    """Axes that take more than one value among ``groups``, in study order."""
    names = list(dict.fromkeys(name for g in groups for name in g.values))
    return [n for n in names if len(_sorted_values([g.values.get(n) for g in groups])) > 1]


def _reference_lines(ax, baselines: dict[str, Any], metric: str) -> None:
    for row, style in (("gaussian", "--"), ("heldout", ":")):
        summary = baselines.get(row)
        if summary is not None and metric in summary.stats:
            ax.axhline(summary.stats[metric].mean, color="black", linestyle=style, linewidth=1)


def _patch(color: str, label: str):
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


def _baseline_handles(baselines: dict[str, Any]) -> list:
    from matplotlib.lines import Line2D

    styles = (("gaussian", "--", "Gaussian fit"), ("heldout", ":", "real held-out"))
    return [Line2D([], [], color="black", linestyle=s, label=label) for row, s, label in styles if row in baselines]


# ---------------------------------------------------------------------------- training curves
def training_curves(study_dir: Path, results: list[dict[str, Any]], path: Path) -> Path | None:
    """Validation loss (EMA weights) against optimiser step for every training run; one colour
    per configuration, one line per seed."""
    runs: dict[str, tuple[str, list[tuple[int, float]]]] = {}
    for r in results:
        if r["run"] in runs:
            continue
        curve = read_val_curve(study_dir / "runs" / r["run"] / "metrics.jsonl")
        if curve:
            runs[r["run"]] = (_train_label(r["group"]), curve)
    if not runs:
        return None
    labels = list(dict.fromkeys(label for label, _ in runs.values()))
    colour = {label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(labels)}
    fig = _figure(8.5, 4.5)
    ax = fig.subplots()
    for label, curve in runs.values():
        steps, losses = zip(*curve)
        ax.plot(steps, losses, color=colour[label], linewidth=1.2, alpha=0.8)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("validation loss (EMA weights)")
    if min(loss for _, c in runs.values() for _, loss in c) > 0:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.legend(handles=[_line(colour[label], label) for label in labels], loc="outside right upper", fontsize="small")
    fig.suptitle("Training curves (one line per seed)")
    return _save(fig, path)


def _train_label(group: str) -> str:
    """The group label without sampling-axis parts: curves belong to training runs."""
    return "/".join(p for p in group.split("/") if not p.startswith(("sample_steps=", "sample_solver="))) or group


def _line(color: str, label: str):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, label=label)


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
    """Per architecture: real held-out rows and generated samples on the first two principal
    components of the (standardised) full training set. The cell shown is the architecture's
    first in study order, preferring one trained on the full data."""
    chosen: dict[str, dict[str, Any]] = {}
    for r in sorted(results, key=lambda r: r.get("subset") is not None):
        if r["arch"] not in chosen and (study_dir / "cells" / r["id"] / "samples.npy").exists():
            chosen[r["arch"]] = r
    if not chosen:
        return None
    projection = _pca_space(study_dir, next(iter(chosen.values())))
    n = len(chosen)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = _figure(max(3.8 * cols, 6.0), 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)).ravel()
    held = projection["heldout"]
    for ax, (arch, r) in zip(axes, chosen.items()):
        samples = np.load(study_dir / "cells" / r["id"] / "samples.npy")[:MAX_PCA_POINTS]
        gen = projection["project"](samples)
        ax.scatter(held[:, 0], held[:, 1], s=8, color="#7f7f7f", alpha=0.6, label="real held-out")
        ax.scatter(gen[:, 0], gen[:, 1], s=8, color="#d62728", alpha=0.5, label="generated")
        which = f"seed {r['seed']}" if r["group"] == arch else f"{r['group']}, seed {r['seed']}"
        ax.set_title(f"{arch} ({which})", fontsize="medium")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(fontsize="small", loc="best")
    fig.suptitle("Held-out vs generated, PCA of the standardised training set")
    return _save(fig, path)


def _pca_space(study_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """PCA (top 2) of the z-scored full training set of the run's data; held-out projected."""
    import torch

    from flowstudy.data import Standardizer
    from flowstudy.data.resolve import load_train_val

    config = json.loads((study_dir / "runs" / result["run"] / "config.json").read_text())
    train, heldout = load_train_val(config["data"], config.get("val"), split_seed=config.get("seed", 0))
    space = Standardizer.fit(torch.from_numpy(train.embeddings), floor_ratio=config.get("std_floor", 0.1))

    def standardise(x: np.ndarray) -> np.ndarray:
        return space.transform(torch.from_numpy(np.asarray(x)).double()).numpy()

    z = standardise(train.embeddings)  # [N, D]
    centre = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - centre, full_matrices=False)
    components = vt[:2].T  # [D, 2]

    def project(x: np.ndarray) -> np.ndarray:
        return (standardise(x) - centre) @ components  # [n, 2]

    return {"project": project, "heldout": project(heldout.embeddings)}


# ---------------------------------------------------------------------------- quality vs NFE
def quality_vs_nfe(groups, baselines: dict[str, Any], path: Path, metrics: Sequence[str] = NFE_METRICS) -> Path | None:
    """Metric (mean, 95 % CI over seeds) against sampling NFE, one line per trained configuration."""
    lines: dict[str, list] = {}
    for g in groups:
        if "nfe" in g.stats:
            lines.setdefault(_train_label(g.label), []).append(g)
    if not any(len(v) >= 2 for v in lines.values()):
        return None
    metrics = [m for m in metrics if any(m in g.stats for g in groups)]
    fig = _figure(3.8 * len(metrics) + 1.5, 3.6)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for i, (label, members) in enumerate(lines.items()):
            members = sorted((g for g in members if metric in g.stats), key=lambda g: g.stats["nfe"].mean)
            x = [g.stats["nfe"].mean for g in members]
            y = [g.stats[metric].mean for g in members]
            err = np.array([_errorbar(g.stats[metric]) for g in members]).T
            ax.errorbar(x, y, yerr=err, marker="o", capsize=2, color=_PALETTE[i % len(_PALETTE)], label=label)
        _reference_lines(ax, baselines, metric)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFE per sample")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    handles = [_line(_PALETTE[i % len(_PALETTE)], label) for i, label in enumerate(lines)] + _baseline_handles(baselines)
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    fig.suptitle("Sample quality versus sampling cost")
    return _save(fig, path)


__all__ = ["metric_bars", "pca_panels", "quality_vs_nfe", "read_val_curve", "training_curves", "varying_axes"]
