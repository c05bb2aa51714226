"""Expansion of a study into cells: the axes' product, extras, names and stable ids.

A cell's id is a readable name from its axis values and seed plus a short hash of its
resolved training configuration and sampling settings; its group label names the
configuration without the seed ("mlp/icfm/subset=200"); its run name names the training
run, shared by cells that differ only in how they are sampled.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.errors import ConfigError
from flowstudy.train.config import EXECUTION_FIELDS, TrainConfig, resolve_config

SAMPLE_AXES = {"sample_solver": "solver", "sample_steps": "steps"}
"""Sampling axes -> the :class:`EvalSettings` field they set."""

NESTED_AXES = ("model", "flow_options")
"""TrainConfig dict fields whose entries can be axes as ``model.KEY`` / ``flow_options.KEY``."""


@dataclass(frozen=True)
class EvalSettings:
    """How a cell is sampled and evaluated.

    ``n_samples`` rows with ``solver`` at ``steps`` steps; metrics with
    :func:`flowstudy.metrics.evaluate_with_baselines` (``eval_seed``, ``n_splits``,
    ``n_dist_splits``); path straightness on ``straightness_rows`` noise rows (0 = off);
    held-out NLL (:func:`flowstudy.metrics.likelihood.heldout_nll`) when ``nll`` names an
    estimator (off | auto | exact | hutchinson), on ``nll_rows`` rows (0 = all) with RK4 at
    ``nll_steps`` steps and ``nll_probes`` Hutchinson probes; ``nll_graph`` replays each NLL
    batch's solve as a CUDA graph (exact estimator; how it runs, not what: no part of a cell's id).
    """

    n_samples: int = 1000
    solver: str = SAMPLE_SOLVER
    steps: int = SAMPLE_STEPS
    eval_seed: int = 0
    n_splits: int = 20
    n_dist_splits: int = 5
    straightness_rows: int = 256
    nll: str = "off"
    nll_rows: int = 0
    nll_steps: int = 20
    nll_probes: int = 4
    nll_graph: bool = False


EVAL_EXECUTION_FIELDS = ("nll_graph",)
"""EvalSettings fields that change how a cell's evaluation runs, not its results: left out of its id."""


@dataclass(frozen=True)
class Grid:
    """What a study's cells are made of: the base configuration, the axes, the extras and the seeds.

    ``axes``: axis name -> values (the main grid is their product); ``extras``: further blocks,
    each ``{"axes": {...}, "base": {...}}`` over the main axes; ``source`` names the study file
    in error messages. :class:`~flowstudy.study.spec.StudySpec` builds one from a study file.
    """

    name: str
    source: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    extras: list[dict[str, Any]]
    seeds: list[int]
    evaluation: EvalSettings

    @property
    def axis_names(self) -> list[str]:
        """Every axis (main axes, then those only extras name), seed excluded."""
        names = list(self.axes)
        for extra in self.extras:
            names += [n for n in extra["axes"] if n not in names]
        return names


@dataclass(frozen=True)
class Cell:
    """One unit of work: train ``config`` (seed included), sample and evaluate with ``evaluation``.

    ``axes`` holds the values the study's axes gave this cell (seed excluded), ``values``
    the value of every axis of the study (from the base where no axis set it); ``group``
    names the configuration without its seed ("mlp/icfm/subset=200"); ``run_name`` is the
    training run folder, shared by cells that differ only in how they are sampled.
    """

    id: str
    group: str
    run_name: str
    seed: int
    axes: dict[str, Any] = field(compare=False)
    config: TrainConfig = field(compare=False)
    evaluation: EvalSettings = field(compare=False)
    values: dict[str, Any] = field(default_factory=dict, compare=False)  # every study axis, resolved

    def axis_value(self, name: str) -> Any:
        """The value of axis ``name`` for this cell, set by an axis or resolved from the base."""
        if name in self.axes:
            return self.axes[name]
        if name in SAMPLE_AXES:
            return getattr(self.evaluation, SAMPLE_AXES[name])
        if "." in name:
            outer, key = name.split(".", 1)
            return getattr(self.config, outer).get(key)
        return getattr(self.config, name)


def expand(grid: Grid) -> list[Cell]:
    """The cells of ``grid``: main grid, then each extra; duplicates (same id) kept once."""
    cells: dict[str, Cell] = {}
    blocks = [(grid.axes, {})] + [({**grid.axes, **e["axes"]}, e["base"]) for e in grid.extras]
    for axes, extra_base in blocks:
        names = list(axes)
        for combo in itertools.product(*(axes[n] for n in names)):
            values = dict(zip(names, combo))
            for seed in grid.seeds:
                cell = make_cell(grid, values, seed, extra_base)
                cells.setdefault(cell.id, cell)
    names = grid.axis_names
    return [replace(c, values={n: c.axis_value(n) for n in names}) for c in cells.values()]


def make_cell(grid: Grid, axis_values: dict[str, Any], seed: int, extra_base: dict[str, Any] | None = None) -> Cell:
    """Resolve one cell: its TrainConfig (validated), its sampling settings, names and id."""
    train_values = {**grid.base, **(extra_base or {})}
    overrides: dict[str, Any] = {"seed": seed}
    sampling: dict[str, Any] = {}
    for name, value in axis_values.items():
        if name in SAMPLE_AXES:
            sampling[SAMPLE_AXES[name]] = value
        elif "." in name:
            outer, key = name.split(".", 1)
            nested = overrides.setdefault(outer, dict(train_values.get(outer, {})))
            nested[key] = value
        else:
            overrides[name] = value
    if "steps" in overrides:
        train_values.pop("epochs", None)  # a steps axis replaces a base run length in epochs
    group = group_label(axis_values)
    where = f"{grid.source}: cell {group or grid.name} (seed {seed})"
    try:
        config = resolve_config(train_values, overrides, source=where)
        evaluation = EvalSettings(**{**asdict(grid.evaluation), **sampling})
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err
    _check_names(config, evaluation, where)
    # how a step is executed (graph or eager) is no part of what a run is: ids stay as before it existed
    identity = {k: v for k, v in config.to_dict().items() if k not in EXECUTION_FIELDS}
    train_hash = _short_hash({"train": identity})
    evaluated = {k: v for k, v in asdict(evaluation).items() if k not in EVAL_EXECUTION_FIELDS}
    cell_hash = _short_hash({"train": identity, "evaluation": evaluated})
    train_parts = [p for n, v in axis_values.items() if n not in SAMPLE_AXES for p in [_slug(n, v)]]
    all_parts = [_slug(n, v) for n, v in axis_values.items()]
    return Cell(
        id="_".join(all_parts + [f"s{seed}", cell_hash]),
        group=group or "base",
        run_name="_".join(train_parts + [f"s{seed}", train_hash]),
        seed=seed,
        axes=dict(axis_values),
        config=config,
        evaluation=evaluation,
    )


def _check_names(config: TrainConfig, evaluation: EvalSettings, where: str) -> None:
    """Unknown architectures, flows and solvers fail at parse time, not in the middle of a study."""
    from flowstudy.flows import list_flows
    from flowstudy.models import list_architectures
    from flowstudy.solvers import list_solvers

    if not isinstance(evaluation.solver, str) or evaluation.solver not in list_solvers():
        raise ConfigError(f"{where}: unknown solver {evaluation.solver!r}; valid: {', '.join(list_solvers())}")
    if isinstance(evaluation.steps, bool) or not isinstance(evaluation.steps, int) or evaluation.steps < 1:
        raise ConfigError(f"{where}: sampling steps must be an integer >= 1; got {evaluation.steps!r}")

    if config.arch not in list_architectures():
        raise ConfigError(f"{where}: unknown architecture {config.arch!r}; valid: {', '.join(list_architectures())}")
    if config.flow not in list_flows():
        raise ConfigError(f"{where}: unknown flow {config.flow!r}; valid: {', '.join(list_flows())}")


def group_label(axis_values: dict[str, Any]) -> str:
    """"mlp/icfm/subset=200": text values bare, others as name=value, in axis order."""
    parts = []
    for name, value in axis_values.items():
        parts.append(value if isinstance(value, str) else f"{name}={_compact(value)}")
    return "/".join(parts)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


def _slug(name: str, value: Any) -> str:
    """A folder-safe piece of a cell id: ``mlp``, ``subset-200``, ``aug-mixup-0.2``."""
    text = value if isinstance(value, str) else f"{name.rsplit('.', 1)[-1]}-{_compact(value)}"
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def _short_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:8]


__all__ = ["NESTED_AXES", "SAMPLE_AXES", "Cell", "EvalSettings", "Grid", "expand", "group_label", "make_cell"]
