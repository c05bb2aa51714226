"""Training and using a run through the API: fit, load_run, sample, reconstruct, the options.

A trained run is one object everywhere (:class:`flowstudy.run.Run`): what ``fit`` returns,
what ``load_run`` rebuilds, what studies, evaluation and the optimiser read.
"""

from __future__ import annotations

import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstudy.datalike import DataLike, as_spec
from flowstudy.defaults import SAMPLE_SOLVER, SAMPLE_STEPS
from flowstudy.run import Run, load_run
from flowstudy.sampling import NearestText, ReconstructionReport, Samples

__all__ = [
    "NearestText",
    "ReconstructionReport",
    "Run",
    "Samples",
    "TrainOption",
    "fit",
    "load_run",
    "reconstruct",
    "sample",
    "train_options",
]


def fit(
    data: DataLike | None = None,
    *,
    out: str | os.PathLike,
    arch: str | None = None,
    val: DataLike | None = None,
    config: str | os.PathLike | dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: tuple[Any, ...] = (),
    **options: Any,
) -> Run:
    """Train a flow-matching prior into the run directory ``out`` and return it as a :class:`Run`.

    ``data``: the training rows (default ``builtin:sonar-gsm8k-1k``); ``val``: held-out rows for
    validation and early stopping (default: the split beside ``data``, else a seeded 10 % of it).
    Rows given in memory are saved under ``out/data/`` so the run can be resumed and evaluated
    from the command line. ``config``: a TOML/YAML/JSON file or a dict of options; ``options``:
    any :class:`~flowstudy.train.TrainConfig` field (:func:`train_options`: ``steps``, ``lr``,
    ``batch_size``, ``seed``, ``device``, ``flow``, ``aug``, ``base_field``, ``model`` ...); None
    means "not given". Precedence: the architecture's recipe < ``config`` < ``options``.
    ``resume=True`` continues ``out`` from its last checkpoint with its saved configuration.
    The returned run holds the best checkpoint (EMA weights) on the training device and, as
    ``run.result``, the :class:`~flowstudy.train.TrainResult`.
    """
    from flowstudy.train import Trainer, read_config_file, resolve_config
    from flowstudy.train.config import TrainConfig

    out = Path(out)
    if resume and (out / "config.json").exists():
        saved = json.loads((out / "config.json").read_text())
        cfg = TrainConfig.from_dict({k: v for k, v in saved.items() if k not in ("versions", "total_steps")}, f"{out}/config.json")
    else:
        overrides = dict(options, arch=arch)
        if data is not None:
            overrides["data"] = as_spec(data, out / "data", "train")
        if val is not None:
            overrides["val"] = as_spec(val, out / "data", "val")
        from_file = isinstance(config, (str, os.PathLike))
        file_values = read_config_file(config) if from_file else config
        cfg = resolve_config(file_values, overrides, str(config) if from_file else "options")
    result = Trainer(cfg, out, callbacks=list(callbacks), progress=progress).fit(resume=resume)
    run = load_run(out, "best", device=cfg.device)
    run.result = result
    return run


def _as_run(run: Run | str | os.PathLike, checkpoint: str, device: str) -> Run:
    return run if isinstance(run, Run) else load_run(run, checkpoint, device=device)


def sample(
    run: Run | str | os.PathLike,
    n: int,
    *,
    seed: int = 0,
    solver: str = SAMPLE_SOLVER,
    steps: int = SAMPLE_STEPS,
    checkpoint: str = "best",
    device: str = "auto",
) -> Samples:
    """n samples from a run (or its directory): x float32 [n, D] in the original space, with the
    standardised z, the NFE and the settings (:meth:`Run.draw`)."""
    return _as_run(run, checkpoint, device).draw(n, seed=seed, solver=solver, steps=steps)


def reconstruct(
    run: Run | str | os.PathLike, data: DataLike, *, solver: str = "rk4", steps: int = 50, checkpoint: str = "best", device: str = "auto"
) -> ReconstructionReport:
    """Rows [N, D] (original space) to noise and back through the run's ODE; errors in the original space."""
    return _as_run(run, checkpoint, device).reconstruct(data, solver=solver, steps=steps)


@dataclass(frozen=True)
class TrainOption:
    """One training option: a :class:`~flowstudy.train.TrainConfig` field, its type, default and doc."""

    name: str
    type: Any  # the field's type hint, e.g. int | None, list[str], dict[str, Any]
    default: Any
    help: str

    @property
    def accepts_none(self) -> bool:
        """Whether None is a value of the field (beyond "not given")."""
        return type(None) in typing.get_args(self.type)


def train_options() -> list[TrainOption]:
    """Every field of :class:`~flowstudy.train.TrainConfig` with its type, default and documentation,
    in declaration order: what ``fit(**options)`` takes and what ``flowstudy train`` offers."""
    import dataclasses

    from flowstudy.train.config import TrainConfig, field_docs

    hints, docs = typing.get_type_hints(TrainConfig), field_docs()
    options = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        options.append(TrainOption(f.name, hints[f.name], default, docs.get(f.name, "")))
    return options
