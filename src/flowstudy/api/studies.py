"""Studies through the API: run (or continue) a study, compare its configurations, write its report."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Comparison", "ComparisonRow", "Study", "report", "run_study", "study_status"]

COMPARED = ("fidelity", "novelty", "c2st_auc", "mmd", "coverage", "best_val_loss")
"""The metrics of a study's comparison table, in reading order."""


@dataclass(frozen=True)
class ComparisonRow:
    """One configuration (or baseline) over seeds: metric -> (mean, 95 % CI half-width or None)."""

    label: str
    seeds: int
    values: dict[str, tuple[float, float | None]]
    best: frozenset[str] = frozenset()  # metrics on which it is the best configuration
    not_better_than_gaussian: bool = False


@dataclass(frozen=True)
class Comparison:
    """A study's configurations (mean ± CI over seeds), then its baselines, on :data:`COMPARED`."""

    name: str
    metrics: tuple[str, ...]
    configurations: list[ComparisonRow]
    baselines: list[ComparisonRow]


@dataclass(frozen=True)
class Study:
    """A study folder and its finished cells (one dict per cell: axes, seed, metrics, baselines).

    ``failures``: ``{"id", "error", "traceback", "attempts"}`` of the cells that failed (retried
    at the next run).
    """

    path: Path
    name: str
    results: list[dict[str, Any]]
    n_cells: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    def comparison(self) -> Comparison:
        """The configurations over seeds beside the baselines (what ``flowstudy study`` prints)."""
        from flowstudy.study.summary import best_labels, gaussian_flags, summarize_baselines, summarize_groups

        groups = summarize_groups(self.results, COMPARED)
        baselines = next(iter(summarize_baselines(self.results, COMPARED).values()), {})
        bests = {m: best_labels(groups, m) for m in COMPARED}
        rows = [
            ComparisonRow(g.label, len(g.seeds), _values(g), frozenset(m for m in COMPARED if g.label in bests[m]),
                          bool(gaussian_flags(g, baselines.get("gaussian"))))
            for g in groups
        ]
        return Comparison(self.name, COMPARED, rows, [ComparisonRow(s.label, len(s.seeds), _values(s)) for s in baselines.values()])

    def to_frame(self):
        """A pandas DataFrame with one row per finished cell (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("Study.to_frame needs pandas: pip install pandas (or use .results)") from err
        return pd.json_normalize(self.results)

    def report(self, reference: str | None = None):
        """Write report.md, report.html and figures into the study folder (see :func:`report`)."""
        return report(self.path, reference=reference)

    def __repr__(self) -> str:
        failed = f", {len(self.failures)} failed" if self.failures else ""
        return f"Study({self.name!r}: {len(self.results)}/{self.n_cells} cells done{failed} in {str(self.path)!r})"


def _values(summary) -> dict[str, tuple[float, float | None]]:
    """metric -> (mean, CI half-width; None for one seed or no spread)."""
    out = {}
    for m in COMPARED:
        stat = summary.stats.get(m)
        if stat is not None:
            spread = stat.n > 1 and math.isfinite(stat.hi) and stat.std > 1e-12 * abs(stat.mean)
            out[m] = (stat.mean, stat.hi - stat.mean if spread else None)
    return out


def run_study(
    spec: str | os.PathLike | dict[str, Any],
    *,
    out: str | os.PathLike | None = None,
    executor: Any = None,
    address: str | None = None,
    workers: int | None = None,
    group_size: int | None = None,
    progress: bool = True,
    report: bool = False,
) -> Study:
    """Run (or continue) a study: every cell not yet done is trained, sampled and evaluated.

    ``spec``: a study file (TOML) or a dict with its tables (``study``, ``base``, ``axes``,
    optional ``extra``). ``out`` defaults to ``studies/runs/<name>``. ``executor``: ``local``
    (worker processes), ``threads`` (one process, a CUDA stream per task), ``ray`` or an object
    with ``map_cells`` (default: the spec's); ``address``: a Ray cluster (implies ray);
    ``workers``: local worker processes (default: the spec's, else 1); ``group_size``: train the
    runs that share a network in stacked groups of up to this many (default: the spec's). Local
    workers are separate processes: a script that calls this must guard its entry point with
    ``if __name__ == "__main__":``. ``report``: write the report once every cell is done. Progress
    goes to the study folder's status.json (:func:`study_status`).
    """
    from flowstudy.study import load_spec, parse_spec
    from flowstudy.study import run_study as run_cells
    from flowstudy.study.runner import DEFAULT_ROOT
    from flowstudy.study.store import STORE_NAME, ResultStore

    parsed = parse_spec(spec, "spec dict") if isinstance(spec, dict) else load_spec(spec)
    study_dir = Path(out) if out is not None else DEFAULT_ROOT / parsed.name
    results = run_cells(parsed, study_dir, executor=executor, address=address, workers=workers, progress=progress, group_size=group_size, report=report)
    failures = ResultStore(study_dir / STORE_NAME).failures([c.id for c in parsed.cells])
    return Study(study_dir, parsed.name, results, len(parsed.cells), failures)


def study_status(study: str | os.PathLike | Study, *, out: str | os.PathLike | None = None) -> dict[str, Any]:
    """A study's progress, from its folder's status.json (:mod:`flowstudy.study.status`): state, phase, cells
    done / running / failed, elapsed seconds, the phase's ETA; ``line``: the same as one line of text.

    ``study``: a study folder, a :class:`Study`, or a study file (its folder: ``out``, else ``studies/runs/<name>``).
    """
    from flowstudy.study import load_spec
    from flowstudy.study.runner import DEFAULT_ROOT
    from flowstudy.study.status import describe, read_status

    if isinstance(study, Study):
        folder = study.path
    elif Path(study).is_file():
        folder = Path(out) if out is not None else DEFAULT_ROOT / load_spec(study).name
    else:
        folder = Path(study)
    status = read_status(folder)
    return {**status, "line": describe(status)}


def report(study_dir: str | os.PathLike | Study, *, reference: str | None = None):
    """Write ``report.md``, a self-contained ``report.html`` and ``figures/*.png`` for a study.

    ``reference``: the configuration the others are tested against (e.g. ``"mlp"``; default the
    study's). Returns :class:`~flowstudy.study.ReportPaths` (``markdown``, ``html``, ``figures``).
    """
    from flowstudy.study import write_report

    return write_report(study_dir.path if isinstance(study_dir, Study) else study_dir, reference=reference)
