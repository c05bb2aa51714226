"""The evaluation table: a model row beside its baselines, and the flags it raises.

Every metric has an ideal value; "better" means nearer to it, on the scale that suits the
metric (:data:`BADNESS`). Fidelity below 1 is not better than 1 (collapsed samples sit
near everything in high dimension), and an AUC below 0.5 is noise around 0.5.

Which metrics decide. ``sanity`` holds each metric's baseline-ordering check on this data
(:mod:`flowstudy.metrics.sanity`); only metrics that pass it are ranked and flagged (without a
check, :data:`FLAGGED_METRICS`). Whether the model beats the Gaussian fit is decided by the
held-out NLL when the table has one (``nll``, :mod:`flowstudy.metrics.likelihood`), else by
the ranked sample metrics.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from flowstudy.errors import ConfigError


def _log_distance(v: float) -> float:
    return abs(math.log(v)) if v > 0 else math.inf


BADNESS: dict[str, Callable[[float], float]] = {
    "fidelity": _log_distance,  # ideal 1
    "novelty": _log_distance,  # ideal 1 (0 = copies)
    "c2st_auc": lambda v: abs(v - 0.5),  # ideal 0.5
    "c2st_knn_auc": lambda v: abs(v - 0.5),  # ideal 0.5
    "mmd": lambda v: max(v, 0.0),  # ideal 0; negative values are estimator noise around 0
    "density": _log_distance,  # ideal 1
    "coverage": lambda v: 1.0 - v,  # higher is better
    "frechet": lambda v: v,  # lower is better; compare at equal N only
    "norm_ratio": _log_distance,  # ideal 1
    "mean_error": lambda v: v,
    "std_error": lambda v: v,
}
"""Metric -> distance from its ideal value (lower is better)."""

FLAGGED_METRICS = ("fidelity", "c2st_auc")
"""Without a sanity check, a model that does not beat the Gaussian fit on these is flagged."""

MEMORISATION_NOVELTY = 0.5
"""Novelty below this (closer to the copies baseline's 0 than to real data's 1) is flagged."""

ROW_ORDER = ("model", "gaussian", "noise", "copies", "heldout")


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


@dataclass
class EvaluationTable:
    """Metrics per row (model, gaussian, noise, copies, heldout), computed by one function on
    the same held-out splits, plus the flags the model row raised.

    ``n_samples`` rows per sampler are used by the neighbour ratios; ``n_eval`` rows per split
    (equal for every row, the held-out reference included) by the distribution metrics.
    """

    rows: dict[str, dict[str, float]]
    n_samples: int
    n_eval: int
    n_train: int
    n_heldout: int
    seed: int
    n_splits: int
    n_dist_splits: int
    flags: list[str] = field(default_factory=list)
    model_row: str = "model"
    sanity: dict[str, dict] = field(default_factory=dict)
    nll: dict[str, float] | None = None

    def ranked_metrics(self) -> list[str]:
        """Metrics that may rank models: those passing the sanity check, else :data:`FLAGGED_METRICS`."""
        if self.sanity:
            return [m for m, s in self.sanity.items() if s["passes"]]
        return [m for m in FLAGGED_METRICS if m in self.rows.get(self.model_row, {})]

    def beats_gaussian_overall(self) -> bool | None:
        """The verdict: by held-out NLL when the table has it, else on every ranked metric
        (None when there is nothing to decide by)."""
        if self.nll is not None:
            return bool(self.nll["beats_gaussian"])
        ranked = [m for m in self.ranked_metrics() if m in self.rows.get("gaussian", {})]
        return all(self.beats_gaussian(m) for m in ranked) if ranked else None

    def badness(self, metric: str, row: str) -> float:
        """Distance of ``row``'s ``metric`` from its ideal (lower is better)."""
        if metric not in BADNESS:
            raise ConfigError(f"unknown metric {metric!r}; valid: {', '.join(BADNESS)}")
        if row not in self.rows or metric not in self.rows[row]:
            raise ConfigError(f"the table has no {metric!r} for row {row!r}; rows: {', '.join(self.rows)}")
        return BADNESS[metric](self.rows[row][metric])

    def beats(self, metric: str, baseline: str, row: str | None = None) -> bool:
        """True when ``row`` (default the model) is strictly nearer the ideal than ``baseline``."""
        return self.badness(metric, row or self.model_row) < self.badness(metric, baseline)

    def beats_gaussian(self, metric: str, row: str | None = None) -> bool:
        """True when the model is strictly nearer the ideal than the Gaussian fit on ``metric``."""
        return self.beats(metric, "gaussian", row)

    def compute_flags(self) -> list[str]:
        """Warnings about the model row: not beating the Gaussian fit by NLL (when known) or on a
        ranked metric, beating it by less than the spread, or novelty low enough to suggest
        memorisation."""
        flags = []
        model, gauss = self.rows[self.model_row], self.rows.get("gaussian")
        if self.nll is not None and not self.nll["beats_gaussian"]:
            flags.append(
                f"model does NOT beat the Gaussian fit by held-out NLL: {self.nll['model']:.4g} vs {self.nll['gaussian']:.4g} "
                f"nats/dim (gap {self.nll['gap']:+.3g} ± {self.nll['gap_std_error']:.2g}; needs < -2 standard errors)"
            )
        if gauss is None:
            flags.append("no Gaussian baseline in the table: the model was not checked against it")
        for metric in self.ranked_metrics():
            if gauss is None or metric not in model or metric not in gauss:
                continue
            pair = f"{model[metric]:.4g} vs gaussian {gauss[metric]:.4g}"
            if not self.beats_gaussian(metric):
                flags.append(f"model does NOT beat the Gaussian baseline on {metric}: {pair}")
                continue
            spread = math.hypot(model.get(f"{metric}_std", 0.0), gauss.get(f"{metric}_std", 0.0))
            if self.badness(metric, "gaussian") - self.badness(metric, self.model_row) < spread:
                flags.append(
                    f"model beats the Gaussian baseline on {metric} by less than the spread {spread:.3g}: {pair}"
                )
        novelty = model.get("novelty")
        if novelty is not None and novelty < MEMORISATION_NOVELTY:
            flags.append(f"model novelty {novelty:.3g} < {MEMORISATION_NOVELTY}: samples sit near training rows")
        return flags

    def sanity_lines(self) -> list[str]:
        """One line per metric: passes the baseline ordering (ranked) or not (shown only), and why."""
        lines = []
        for m, s in self.sanity.items():
            margins = ", ".join("–" if v is None else f"{v:.3g}" for v in s["margins"])
            verdict = "ranked" if s["passes"] else f"NOT ranked: {s['reason']}"
            lines.append(f"{m}: real < Gaussian < noise margins ({margins}) CI half-widths: {verdict}")
        return lines

    def to_rows(self) -> list[dict[str, float | str]]:
        """One dict per row, ``{"row": name, metric: value, ...}``, model first."""
        names = [r for r in ROW_ORDER if r in self.rows] + [r for r in self.rows if r not in ROW_ORDER]
        if self.model_row in names:
            names.insert(0, names.pop(names.index(self.model_row)))
        return [{"row": name, **self.rows[name]} for name in names]

    def format(self, metrics: tuple[str, ...] | None = None) -> str:
        """A plain-text table (rows x metrics) followed by the flags."""
        metrics = metrics or tuple(m for m in BADNESS if any(m in r for r in self.rows.values()))
        width = {m: max(12, len(m) + 2) for m in metrics}
        lines = ["row".ljust(10) + "".join(m.rjust(width[m]) for m in metrics)]
        for r in self.to_rows():
            cells = "".join((f"{r[m]:{width[m]}.4g}" if m in r else "-".rjust(width[m])) for m in metrics)
            lines.append(str(r["row"]).ljust(10) + cells)
        lines += [f"SANITY: {line}" for line in self.sanity_lines()]
        lines += [f"FLAG: {f}" for f in self.flags]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-serialisable dict; non-finite values become None."""
        d = asdict(self)
        d["rows"] = {name: {k: _finite_or_none(v) for k, v in r.items()} for name, r in self.rows.items()}
        if self.nll is not None:
            d["nll"] = {k: (v if isinstance(v, bool) else _finite_or_none(v)) for k, v in self.nll.items()}
        return d

    def to_json(self, **kwargs) -> str:
        """:meth:`to_dict` as strict JSON."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    @classmethod
    def from_dict(cls, d: dict) -> EvaluationTable:
        """Inverse of :meth:`to_dict` (None values come back as NaN)."""
        rows = {name: {k: (math.nan if v is None else float(v)) for k, v in r.items()} for name, r in d["rows"].items()}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{**{k: v for k, v in d.items() if k in known}, "rows": rows, "flags": list(d.get("flags", []))})
