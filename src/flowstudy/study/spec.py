"""Study specifications: a base training configuration plus axes, expanded into cells.

A study file is TOML::

    [study]                      # how to run and evaluate
    name = "architectures"
    seeds = [0, 1, 2]            # every configuration is trained once per seed
    n_samples = 1000             # generated rows per cell
    solver = "midpoint"          # sampling ODE solver and its steps (default: midpoint, 25)
    steps = 25
    executor = "local"           # local | threads (one GPU, runs side by side) | ray
    workers = 2
    eval_seed = 0                # held-out splits, baselines, classifier folds: same for every cell
    reference = "mlp/icfm"       # configuration the report tests the others against (optional)
    # optional: description, n_splits (20), n_dist_splits (5), straightness_rows (256; 0 = off),
    # address (Ray), num_cpus_per_cell (1), num_gpus_per_cell (0), group_size (1; > 1 trains runs
    # that share a network in stacked groups of up to this many, flowstudy.study.groups),
    # nll ("off"; "auto" | "exact" | "hutchinson": held-out NLL per cell), nll_rows (0 = all),
    # nll_steps (20, RK4), nll_probes (4, Hutchinson), nll_graph (false; true: each NLL batch's
    # solve replayed as a CUDA graph, exact estimator only)

    [base]                       # any flowstudy.train.TrainConfig field
    data = "builtin:sonar-gsm8k-1k"
    model = {hidden_dim = 512}

    [axes]                       # field -> values; the grid is their product (x seeds)
    arch = ["mlp", "dit"]
    flow = ["icfm", "otcfm"]

    [[extra]]                    # non-rectangular additions
    axes = {subset = [200, 400], arch = ["mlp"]}

Axis names are TrainConfig fields, ``model.KEY`` / ``flow_options.KEY`` (one entry of those
dicts), ``seed`` (replaces ``[study] seeds``) and the sampling axes ``sample_solver`` and
``sample_steps``. An ``[[extra]]`` table's axes replace the same-named main axes; the main
axes it does not name still vary over all their values, so name an axis with one value to
pin it. An extra may also carry a ``base`` table of overrides for its cells only.

Precedence of training values: TrainConfig defaults < the architecture's recipe < ``[base]``
< an extra's ``base`` < axis values (:func:`flowstudy.train.config.resolve_config`).

Cells come in a deterministic order: the main grid (axes in the order of the file, the last
varying fastest, seeds innermost), then each extra (the main axes in file order, then the
extra's own new axes). Each cell has a stable id: a readable name from its axis values and
seed plus a short hash of its resolved configuration and sampling settings, so an edited
base gives new ids and old results are never mistaken for new ones. A cell that an extra
reproduces exactly (same id) is kept once.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from flowstudy.errors import ConfigError
from flowstudy.study.executors import EXECUTORS
from flowstudy.study.grid import NESTED_AXES, SAMPLE_AXES, Cell, EvalSettings, Grid, expand
from flowstudy.train.config import TrainConfig

@dataclass
class StudySpec:
    """A parsed study file: settings, axes and the expanded cells."""

    name: str
    source: str
    text: str | None
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    extras: list[dict[str, Any]]
    seeds: list[int]
    evaluation: EvalSettings
    executor: str = "local"
    workers: int | None = None
    address: str | None = None
    num_cpus_per_cell: float = 1.0
    num_gpus_per_cell: float = 0.0
    group_size: int = 1  # > 1: train runs in stacked groups of up to this many (flowstudy.study.groups)
    reference: str | None = None
    description: str = ""
    cells: list[Cell] = field(default_factory=list)

    @property
    def grid(self) -> Grid:
        """What the cells are made of (base, axes, extras, seeds, evaluation)."""
        return Grid(self.name, self.source, self.base, self.axes, self.extras, self.seeds, self.evaluation)

    @property
    def axis_names(self) -> list[str]:
        """Every axis of the study (main axes, then those only extras name), seed excluded."""
        return self.grid.axis_names

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (what the report reads back from the study folder)."""
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "axes": self.axis_names,
            "seeds": self.seeds,
            "reference": self.reference,
            "evaluation": asdict(self.evaluation),
            "cells": [
                {"id": c.id, "group": c.group, "run": c.run_name, "seed": c.seed, "axes": c.axes, "values": c.values}
                for c in self.cells
            ],
        }


# ----------------------------------------------------------------------------- parsing
_STUDY_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "description": (str,),
    "seeds": (list,),
    "n_samples": (int,),
    "solver": (str,),
    "steps": (int,),
    "executor": (str,),
    "workers": (int,),
    "address": (str,),
    "num_cpus_per_cell": (int, float),
    "num_gpus_per_cell": (int, float),
    "group_size": (int,),
    "eval_seed": (int,),
    "n_splits": (int,),
    "n_dist_splits": (int,),
    "straightness_rows": (int,),
    "nll": (str,),
    "nll_rows": (int,),
    "nll_steps": (int,),
    "nll_probes": (int,),
    "nll_graph": (bool,),
    "reference": (str,),
}
_TOP_KEYS = ("study", "base", "axes", "extra")
_EXTRA_KEYS = ("axes", "base")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def load_spec(path: str | Path) -> StudySpec:
    """Read and expand the study file ``path`` (TOML). Errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        values = tomllib.loads(text)
    except Exception as err:  # the parser's message carries the line
        raise ConfigError(f"{path}: cannot parse TOML: {err}") from err
    return parse_spec(values, source=str(path), text=text)


def parse_spec(values: dict[str, Any], source: str = "study", text: str | None = None) -> StudySpec:
    """Build a :class:`StudySpec` from the tables of a study file (see the module docstring)."""
    _check_keys(values, _TOP_KEYS, source, "top-level table")
    study = _table(values, "study", source, required=True)
    _check_keys(study, tuple(_STUDY_KEYS), source, "[study]")
    for key, value in study.items():
        _check_type(value, _STUDY_KEYS[key], f"{source}: [study] {key}")
    name = study.get("name")
    if not name or not _NAME_RE.match(name):
        raise ConfigError(f"{source}: [study] name must be a folder-safe name (letters, digits, . _ -); got {name!r}")
    base = _table(values, "base", source)
    _check_train_keys(base, source, "[base]")
    axes = _parse_axes(_table(values, "axes", source), source, "[axes]")
    extras = _parse_extras(values.get("extra", []), source)
    seeds = _seeds(study, axes, extras, source)
    spec = StudySpec(
        name=name,
        source=source,
        text=text,
        base=base,
        axes=axes,
        extras=extras,
        seeds=seeds,
        evaluation=_eval_settings(study, source),
        executor=study.get("executor", "local"),
        workers=study.get("workers"),
        address=study.get("address"),
        num_cpus_per_cell=float(study.get("num_cpus_per_cell", 1.0)),
        num_gpus_per_cell=float(study.get("num_gpus_per_cell", 0.0)),
        group_size=study.get("group_size", 1),
        reference=study.get("reference"),
        description=study.get("description", ""),
    )
    if spec.executor not in EXECUTORS:
        raise ConfigError(f"{source}: [study] executor must be one of {', '.join(EXECUTORS)}; got {spec.executor!r}")
    if spec.group_size < 1:
        raise ConfigError(f"{source}: [study] group_size must be >= 1; got {spec.group_size}")
    if spec.workers is not None and spec.workers < 1:
        raise ConfigError(f"{source}: [study] workers must be >= 1; got {spec.workers}")
    spec.cells = expand(spec.grid)
    return spec


def _table(values: dict[str, Any], key: str, source: str, required: bool = False) -> dict[str, Any]:
    table = values.get(key, {} if not required else None)
    if table is None:
        raise ConfigError(f"{source}: missing [{key}] table")
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: '{key}' must be a table; got {type(table).__name__}")
    return dict(table)


def _check_keys(table: dict[str, Any], valid: tuple[str, ...], source: str, where: str) -> None:
    unknown = [k for k in table if k not in valid]
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} in {where}; valid: {', '.join(valid)}")


def _check_type(value: Any, types: tuple[type, ...], where: str) -> None:
    # bool is an int in Python; a TOML true where a number is expected is still a mistake
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"{where} must be {names}; got {value!r}")


_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))


def _check_train_keys(table: dict[str, Any], source: str, where: str) -> None:
    unknown = [k for k in table if k not in _TRAIN_FIELDS]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r} in {where}; valid: TrainConfig fields ({', '.join(_TRAIN_FIELDS)})"
        )


def _check_axis_name(name: str, source: str, where: str) -> None:
    if name in _TRAIN_FIELDS or name in SAMPLE_AXES:
        return
    outer, dot, key = name.partition(".")
    if dot and outer in NESTED_AXES and key:
        return
    raise ConfigError(
        f"{source}: unknown axis {name!r} in {where}; valid: TrainConfig fields, "
        f"{', '.join(f'{n}.KEY' for n in NESTED_AXES)}, {', '.join(SAMPLE_AXES)}"
    )


def _parse_axes(table: dict[str, Any], source: str, where: str) -> dict[str, list[Any]]:
    axes: dict[str, list[Any]] = {}
    for name, values in table.items():
        _check_axis_name(name, source, where)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: axis {name!r} in {where} must be a non-empty list of values; got {values!r}")
        axes[name] = list(values)
    return axes


def _parse_extras(extras: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(extras, list):
        raise ConfigError(f"{source}: 'extra' must be an array of tables ([[extra]]); got {type(extras).__name__}")
    parsed = []
    for i, extra in enumerate(extras):
        where = f"[[extra]] #{i + 1}"
        if not isinstance(extra, dict):
            raise ConfigError(f"{source}: {where} must be a table")
        _check_keys(extra, _EXTRA_KEYS, source, where)
        if "axes" not in extra:
            raise ConfigError(f"{source}: {where} needs an 'axes' table")
        base = _table(extra, "base", source)
        _check_train_keys(base, source, f"{where} base")
        parsed.append({"axes": _parse_axes(_table(extra, "axes", source), source, f"{where} axes"), "base": base})
    return parsed


def _seeds(study: dict[str, Any], axes: dict[str, list[Any]], extras: list[dict], source: str) -> list[int]:
    """Seeds come from ``[study] seeds`` or a ``seed`` axis (not both)."""
    if "seed" in axes and "seeds" in study:
        raise ConfigError(f"{source}: give seeds either as [study] seeds or as a 'seed' axis, not both")
    if any("seed" in e["axes"] for e in extras):
        raise ConfigError(f"{source}: [[extra]] tables cannot vary 'seed'; set the seeds in [study]")
    seeds = axes.pop("seed", None) or study.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{source}: seeds must be a non-empty list of integers; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: seeds must be distinct; got {seeds!r}")
    return list(seeds)


def _eval_settings(study: dict[str, Any], source: str) -> EvalSettings:
    keys = ("n_samples", "solver", "steps", "eval_seed", "n_splits", "n_dist_splits", "straightness_rows", "nll", "nll_rows", "nll_steps", "nll_probes", "nll_graph")
    settings = EvalSettings(**{k: study[k] for k in keys if k in study})
    if settings.n_samples < 2:
        raise ConfigError(f"{source}: [study] n_samples must be >= 2; got {settings.n_samples}")
    if settings.steps < 1:
        raise ConfigError(f"{source}: [study] steps must be >= 1; got {settings.steps}")
    if not 1 <= settings.n_dist_splits <= settings.n_splits:
        raise ConfigError(f"{source}: [study] n_dist_splits must be in [1, n_splits={settings.n_splits}]")
    if settings.straightness_rows < 0:
        raise ConfigError(f"{source}: [study] straightness_rows must be >= 0 (0 = off)")
    if settings.nll not in ("off", "auto", "exact", "hutchinson"):
        raise ConfigError(f"{source}: [study] nll must be one of off, auto, exact, hutchinson; got {settings.nll!r}")
    if settings.nll_rows < 0 or settings.nll_steps < 1 or settings.nll_probes < 1:
        raise ConfigError(f"{source}: [study] nll_rows must be >= 0 (0 = all), nll_steps and nll_probes >= 1")
    return settings


__all__ = ["StudySpec", "load_spec", "parse_spec"]
