"""One study cell: train -> sample -> evaluate, into the study folder.

    STUDY/runs/RUN_NAME/        the training run (a normal run directory; cells that differ
                                only in sampling share it)
    STUDY/cells/CELL_ID/        samples.npy (original space, float32 [N, D]),
                                evaluation.json (model and baseline rows, sanity, flags, and
                                the held-out NLL when the study asks for it)

Training resumes an unfinished ``last.pt`` and is skipped for a finished run, so a killed
study loses at most the work since the run's last validation.

Evaluation space. Every cell is evaluated against the FULL training set of its data spec
(never its subset) and the same held-out set (the data's test split when it has one, else its
validation split: :func:`flowstudy.evaluation.default_reference_spec`) with the same ``eval_seed``, so cells compare
with each other and with the baselines. The space is the z-score of that full training set:
for a cell trained on all of it this is exactly the run's own standardiser; a cell trained
on a subset has its samples mapped back to the original space and re-standardised, so
subset sizes are compared in one space rather than each in its own. (A data spec without a
held-out split beside it is split at random by the cell's seed, as in training: then the
held-out rows, and so the baseline rows, differ between seeds.)
"""

from __future__ import annotations

import fcntl
import json
import math
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowstudy.io import atomic_save_npy, atomic_write_json
from flowstudy.study.grid import Cell

STRAIGHTNESS_STEPS = 50
"""Euler steps of the straightness measurement: one protocol for every cell, whatever its solver."""

TIMING_FIELDS = (
    "train_seconds", "sample_seconds", "samples_per_s", "metrics_seconds", "nll_seconds", "eval_seconds",
    "group_eval_seconds", "cell_seconds",
)
"""Result fields that measure wall time. A cell evaluated in a group of K (``eval_group_size``) gets a
K-th of the group's sampling, metrics and NLL seconds; ``group_eval_seconds`` is the group's whole
evaluation (sampling included)."""

RESULT_ONLY_FIELDS = ("nfe", "eval_group_size") + TIMING_FIELDS
"""Fields of a cell's result that its evaluation.json leaves out (how the evaluation ran)."""

VOLATILE_FIELDS = TIMING_FIELDS + ("train_resumed", "eval_group_size")
"""Fields that depend on how a run went; every other field is determined by the cell (on CPU)."""

TRAIN_SUMMARY = "train_summary.json"


def run_cell(cell: Cell, study_dir: str | Path) -> dict[str, Any]:
    """Train, sample and evaluate ``cell``; returns its flat result dict (see :func:`flat_result`).

    The reference path: one cell at a time. :func:`flowstudy.study.group_eval.evaluate_cells` evaluates the
    cells of a stacked group at once and is tested against this."""
    from flowstudy.sampling import sample_standardized
    from flowstudy.run import load_run

    started = time.perf_counter()
    study_dir = Path(study_dir)
    run_dir = study_dir / "runs" / cell.run_name
    with _run_lock(run_dir):
        training = train_run(cell.config, run_dir)
    ev = cell.evaluation
    run = load_run(run_dir, "best", device=cell.config.device)
    tic = time.perf_counter()
    z, nfe = sample_standardized(run, ev.n_samples, solver=ev.solver, steps=ev.steps, seed=cell.seed)
    sample_seconds = time.perf_counter() - tic
    samples = save_samples(cell, study_dir, run, z)

    tic = time.perf_counter()
    z_eval, train_z, heldout_z, heldout = evaluation_space(cell, run, z)
    table = _evaluate(z_eval, train_z, heldout_z, ev)
    metrics_seconds = time.perf_counter() - tic
    nll = _nll(cell, run, heldout) if ev.nll != "off" else None
    nll_seconds = time.perf_counter() - tic - metrics_seconds
    extra_metrics = cell_extras(run, ev, samples, heldout)
    eval_seconds = time.perf_counter() - tic
    timing = {
        "nfe": nfe,
        "sample_seconds": sample_seconds,
        "samples_per_s": ev.n_samples / max(sample_seconds, 1e-9),
        "metrics_seconds": metrics_seconds,
        "nll_seconds": nll_seconds,
        "eval_seconds": eval_seconds,
        "group_eval_seconds": sample_seconds + eval_seconds,
        "eval_group_size": 1,
        "cell_seconds": time.perf_counter() - started,
    }
    return cell_outcome(cell, study_dir, training, table, nll, {**timing, **extra_metrics})


def save_samples(cell: Cell, study_dir: Path, run, z: torch.Tensor) -> np.ndarray:
    """Write STUDY/cells/CELL/samples.npy from standardised samples z [N, D]; returns them in the
    original space (float32 [N, D])."""
    samples = run.standardizer.inverse(z.double()).float().numpy()  # [N, D] original space
    atomic_save_npy(Path(study_dir) / "cells" / cell.id / "samples.npy", samples)
    return samples


def cell_extras(run, ev, samples: np.ndarray, heldout: np.ndarray, straightness: bool = True) -> dict[str, float]:
    """Straightness (when the study asks for it and ``straightness``) and the samples' norm ratio in the
    original space, where the SONAR decoder reads it (the table's norm_ratio is the standardised one)."""
    from flowstudy.metrics import norm_ratio

    extra = _straightness(run, ev) if ev.straightness_rows > 0 and straightness else {}
    extra["original_norm_ratio"] = norm_ratio(samples, heldout)
    return extra


def cell_outcome(cell: Cell, study_dir: Path, training: dict[str, Any], table, nll, extra: dict[str, Any]) -> dict[str, Any]:
    """Write STUDY/cells/CELL/evaluation.json (the table, ``nll``'s summary and details, ``extra``'s
    metrics) and return the cell's flat result."""
    if nll is not None:
        table.nll = nll.summary()
        table.flags = table.compute_flags()
    metrics = {k: v for k, v in extra.items() if k not in RESULT_ONLY_FIELDS}
    nll_details = {"nll_details": nll.to_dict()} if nll is not None else {}
    atomic_write_json(Path(study_dir) / "cells" / cell.id / "evaluation.json",
                      {"cell": cell.id, "group": cell.group, **table.to_dict(), **metrics, **nll_details})
    return flat_result(cell, training, table, extra)


# ----------------------------------------------------------------------------- training
@contextmanager
def _run_lock(run_dir: Path):
    """Exclusive lock on a training run: two cells that share it never train it at once."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f".{run_dir.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def train_run(config, run_dir: Path) -> dict[str, Any]:
    """Train ``config`` into ``run_dir``: fresh, resumed from an unfinished last.pt, or skipped.

    Returns the training summary: steps, total_steps, best_val_loss, stopped_early,
    train_seconds (of the last training segment) and resumed.
    """
    from flowstudy.train import Trainer
    from flowstudy.checkpoint import load_checkpoint
    from flowstudy.rundir import RunPaths

    paths, summary_path = RunPaths(run_dir), run_dir / TRAIN_SUMMARY
    if paths.last.exists():
        state = load_checkpoint(paths.last)
        if state.get("finished"):
            if summary_path.exists():
                return json.loads(summary_path.read_text())
            return _summary_from_state(state)  # killed between the last checkpoint and the summary
        result = Trainer(config, run_dir, progress=False).fit(resume=True)
        resumed = True
    else:
        if run_dir.exists():  # killed before its first checkpoint: nothing worth keeping
            shutil.rmtree(run_dir)
        result = Trainer(config, run_dir, progress=False).fit()
        resumed = False
    summary = training_summary(result, resumed)
    atomic_write_json(summary_path, summary)
    return summary


def training_summary(result, resumed: bool) -> dict[str, Any]:
    """What a cell records of its training run (a TrainResult), as train_summary.json holds it."""
    return {
        "steps": result.steps,
        "total_steps": result.total_steps,
        "best_val_loss": result.best_val_loss,
        "stopped_early": result.stopped_early,
        "train_seconds": result.seconds,
        "resumed": resumed,
    }


def _summary_from_state(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "steps": state["step"],
        "total_steps": state["total_steps"],
        "best_val_loss": state["best_val"],
        "stopped_early": state["step"] < state["total_steps"],
        "train_seconds": math.nan,
        "resumed": False,
    }


# ----------------------------------------------------------------------------- evaluation
def evaluation_space(cell: Cell, run, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """Samples, full training set and held-out set in the evaluation space (module docstring).

    z: [N, D] samples in the run's standardised space. Returns float32 [N, D], [Nt, D], [Nh, D]
    and the held-out rows in the original space, [Nh, D].
    """
    from flowstudy.data import Standardizer, check_same_dim, load_dataset
    from flowstudy.data.resolve import load_train_val
    from flowstudy.evaluation import default_test_spec

    cfg = cell.config
    train, heldout = load_train_val(cfg.data, cfg.val, subset=None, subset_seed=cfg.subset_seed, split_seed=cfg.seed)
    test_spec = default_test_spec(cfg.data)
    if test_spec is not None:  # validation chose the checkpoint: the test split is the held-out reference
        heldout = load_dataset(test_spec)
        check_same_dim({train.source: train.dim, heldout.source: heldout.dim})
    if cfg.subset is None:
        space = run.standardizer
    else:
        space = Standardizer.fit(torch.from_numpy(train.embeddings), floor_ratio=cfg.std_floor)
        z = space.transform(run.standardizer.inverse(z.double())).float()

    def standardise(x: np.ndarray) -> torch.Tensor:
        return space.transform(torch.from_numpy(x).double()).float()

    return z, standardise(train.embeddings), standardise(heldout.embeddings), heldout.embeddings


def _evaluate(z, train_z, heldout_z, ev):
    from flowstudy.metrics import evaluate_with_baselines

    return evaluate_with_baselines(
        z, train_z, heldout_z, seed=ev.eval_seed, n_splits=ev.n_splits, n_dist_splits=ev.n_dist_splits
    )


def _nll(cell: Cell, run, heldout: np.ndarray):
    """Held-out NLL of the run on the evaluation's held-out rows (original space), beside the
    Gaussian fits of the full training set (:func:`flowstudy.metrics.likelihood.heldout_nll`)."""
    from flowstudy.data.resolve import load_train_val
    from flowstudy.metrics.likelihood import heldout_nll

    cfg, ev = cell.config, cell.evaluation
    train, _ = load_train_val(cfg.data, cfg.val, subset=None, split_seed=cfg.seed)
    return heldout_nll(
        run, heldout, train.embeddings, estimator=ev.nll, probes=ev.nll_probes, steps=ev.nll_steps,
        rows=ev.nll_rows or None, seed=ev.eval_seed, graph=ev.nll_graph,
    )


def straightness_noise(ev, dim: int) -> torch.Tensor:
    """The noise rows [min(straightness_rows, n_samples), dim] every cell's straightness starts from (seeded by eval_seed)."""
    generator = torch.Generator().manual_seed(ev.eval_seed + 7919)
    return torch.randn(min(ev.straightness_rows, ev.n_samples), dim, generator=generator)


def _straightness(run, ev) -> dict[str, float]:
    """Straightness of the learned paths from a fixed set of noise rows (seeded by eval_seed)."""
    from flowstudy.metrics import straightness

    device = next(run.model.parameters()).device
    x0 = straightness_noise(ev, run.standardizer.dim).to(device)
    result = straightness(run.velocity, x0, method="euler", steps=STRAIGHTNESS_STEPS)
    return {"straightness": result.value, "straightness_relative": result.relative}


def flat_result(cell: Cell, training: dict[str, Any], table, extra: dict[str, Any]) -> dict[str, Any]:
    """One flat dict per cell.

    Keys: id, group, run, seed, the cell's axis values, its arch/flow/data/subset and
    sampling settings; train_* fields; the model row's metrics under their own names
    (fidelity, c2st_auc, ...); each baseline row's metrics as ``baseline_<row>_<metric>``
    (gaussian, noise, copies, heldout); ``sanity_<metric>`` (1 when the metric passes the
    baseline-ordering check on this data, else 0) and ``sanity_margin_<metric>`` (the smaller
    of its two margins); with NLL, ``nll`` (nats/dim, original space), ``nll_std_error``,
    ``baseline_gaussian_nll``, ``baseline_gaussian_diagonal_nll``, ``nll_gap`` and
    ``nll_gap_std_error``; ``beats_gaussian[_<metric>]`` (on every ranked metric, or by NLL
    when the cell has it) and ``flags``.
    """
    cfg, ev = cell.config, cell.evaluation
    out: dict[str, Any] = {"id": cell.id, "group": cell.group, "run": cell.run_name, "seed": cell.seed}
    out.update({name: _plain(value) for name, value in {**cell.values, **cell.axes}.items()})
    out.update({"arch": cfg.arch, "flow": cfg.flow, "data": cfg.data, "subset": cfg.subset})
    out.update({"solver": ev.solver, "sample_steps": ev.steps, "n_samples": ev.n_samples, "eval_seed": ev.eval_seed})
    out.update(
        {
            "train_steps": training["steps"],
            "total_steps": training["total_steps"],
            "best_val_loss": training["best_val_loss"],
            "stopped_early": training["stopped_early"],
            "train_resumed": training["resumed"],
            "train_seconds": training["train_seconds"],
        }
    )
    out.update(extra)
    model_row = table.rows[table.model_row]
    out.update(model_row)
    for row, metrics in table.rows.items():
        if row != table.model_row:
            out.update({f"baseline_{row}_{k}": v for k, v in metrics.items()})
    for m, check in table.sanity.items():
        out[f"sanity_{m}"] = int(check["passes"])
        out[f"sanity_margin_{m}"] = min((v for v in check["margins"] if v is not None), default=None)
    if table.nll is not None:
        n = table.nll
        out.update({"nll": n["model"], "nll_std_error": n["model_std_error"], "baseline_gaussian_nll": n["gaussian"]})
        out.update({"baseline_gaussian_diagonal_nll": n["gaussian_diagonal"], "nll_gap": n["gap"], "nll_gap_std_error": n["gap_std_error"]})
    ranked = [m for m in table.ranked_metrics() if m in model_row and "gaussian" in table.rows]
    out.update({f"beats_gaussian_{m}": table.beats_gaussian(m) for m in ranked})
    out["beats_gaussian"] = table.beats_gaussian_overall()
    out.update({"n_eval": table.n_eval, "n_train_eval": table.n_train, "n_heldout": table.n_heldout})
    out["flags"] = list(table.flags)
    return {k: _plain(v) for k, v in out.items()}


def _plain(value: Any) -> Any:
    """JSON-friendly scalars: numpy/torch scalars -> Python, non-finite floats -> None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes, list, dict)):
        value = value.item()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "RESULT_ONLY_FIELDS", "STRAIGHTNESS_STEPS", "TIMING_FIELDS", "VOLATILE_FIELDS", "cell_extras", "cell_outcome",
    "evaluation_space", "flat_result", "run_cell", "save_samples", "straightness_noise", "train_run",
]
