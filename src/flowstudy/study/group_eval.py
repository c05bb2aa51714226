"""The cells of a stacked group evaluated at once: the fast path beside :func:`flowstudy.study.cell.run_cell`.

A study's cells that share a network (flowstudy.study.groups), their data and their evaluation settings
are evaluated as one task:

- **sampling**: the members' subspace fields as one vmapped network, all members' noise rows in one
  fixed-step solve in their bases' eigenbasis, a CUDA graph on the GPU
  (:func:`flowstudy.study.stacked_field.sample_members`);
- **sample metrics**: the baseline and held-out rows once per data set and sample count
  (:mod:`flowstudy.metrics.batched`), each member's own row with its distances and nearest-neighbour
  searches on the run's device;
- **held-out NLL**: all members' augmented ODEs (exact divergence) in one solve per chunk of rows
  (:func:`flowstudy.study.stacked_field.members_log_prob`), beside the Gaussian fits' closed forms.

Each cell then writes what :func:`run_cell` writes (samples.npy, evaluation.json) and returns the same
flat result, whose metrics equal the cell path's up to floating-point rounding (a test compares them);
its timing fields hold a K-th of the group's seconds and ``group_eval_seconds`` the group's.

Groups the fast path does not cover (networks without a subspace residual read in its eigenbasis, an
adaptive sampler, a Hutchinson or subsampled NLL) and a group whose fast path fails are evaluated cell
by cell with :func:`run_cell`.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from flowstudy.study.cell import _run_lock, cell_extras, cell_outcome, evaluation_space, run_cell, save_samples, train_run
from flowstudy.study.executors import CellError
from flowstudy.study.grid import Cell

NLL_SOLVER = "rk4"
"""The held-out NLL's solver (flowstudy.metrics.likelihood.DEFAULT_SOLVER, what a cell's NLL uses)."""


class NotBatched(Exception):
    """A group the fast path does not cover (the reason is the message)."""


def evaluation_groups(cells: Sequence[Cell], size: int) -> list[list[Cell]]:
    """The cells in groups of at most ``size`` that can be evaluated at once: one network and its shapes
    (:func:`~flowstudy.train.stacked.group_key`), one data set and held-out spec, one evaluation setting;
    in cell order."""
    from flowstudy.train.stacked import group_key

    by_key: dict[tuple, list[Cell]] = {}
    for cell in cells:
        cfg = cell.config
        by_key.setdefault((group_key(cfg), cfg.data, cfg.val, cell.evaluation), []).append(cell)
    return [members[i : i + size] for members in by_key.values() for i in range(0, len(members), size)]


def evaluate_cells(cells: Sequence[Cell], study_dir: str | Path) -> list[dict[str, Any] | CellError]:
    """Each cell's flat result (or its CellError), the cells evaluated as one group where the fast path
    covers them, else (or when it fails) one by one with :func:`run_cell`. A GPU running out of
    memory is raised, for the executor to retry the group."""
    cells = list(cells)
    if len(cells) > 1:
        try:
            return evaluate_group(cells, Path(study_dir))
        except Exception as err:
            if _out_of_memory(err):
                raise
            why = str(err) if isinstance(err, NotBatched) else f"{type(err).__name__}: {err}"
            print(f"group of {len(cells)} cells ({cells[0].group}, ...) evaluated cell by cell: {why}", file=sys.stderr)
    return [_reference(cell, Path(study_dir)) for cell in cells]


def _reference(cell: Cell, study_dir: Path) -> dict[str, Any] | CellError:
    started = time.perf_counter()
    try:
        return run_cell(cell, study_dir)
    except Exception as err:
        if _out_of_memory(err):
            raise
        return CellError(f"{type(err).__name__}: {err}", traceback.format_exc(), time.perf_counter() - started)


def _out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "CUDA error: out of memory" in str(err)


def _not_batched(flows: list, cells: Sequence[Cell]) -> str | None:
    """Why the fast path does not cover these cells, or None."""
    from flowstudy.graph_solver import FIXED_STEP_METHODS

    ev = cells[0].evaluation
    if any(f is None for f in flows):
        return "a run is not a subspace residual that reads its subspace coordinates"
    if ev.solver not in FIXED_STEP_METHODS:
        return f"the sampler {ev.solver!r} is adaptive"
    if ev.nll not in ("off", "auto", "exact"):
        return f"the NLL estimator {ev.nll!r} is not the exact divergence"
    if ev.nll_rows:
        return "the NLL uses a subset of the held-out rows"
    return None


def evaluate_group(cells: Sequence[Cell], study_dir: Path) -> list[dict[str, Any]]:
    """Train (or find trained) the cells' runs, then sample, evaluate and NLL them as one group
    (module docstring). Raises :class:`NotBatched` for groups the fast path does not cover."""
    from flowstudy.flows.subspace import EigenbasisFlow
    from flowstudy.study.stacked_field import StackedEigenField, sample_members
    from flowstudy.devices import resolve_device
    from flowstudy.run import load_run

    started = time.perf_counter()
    trainings = []
    for cell in cells:
        run_dir = study_dir / "runs" / cell.run_name
        with _run_lock(run_dir):
            trainings.append(train_run(cell.config, run_dir))
    device = resolve_device(cells[0].config.device)
    runs = [load_run(study_dir / "runs" / cell.run_name, "best", device=device) for cell in cells]
    flows = [EigenbasisFlow.of(run.model) for run in runs]
    reason = _not_batched(flows, cells)
    if reason is not None:
        raise NotBatched(reason)
    ev, precision, K = cells[0].evaluation, cells[0].config.precision, len(cells)
    field = StackedEigenField(flows)

    tic = time.perf_counter()
    zs, nfe = sample_members(field, ev.n_samples, [c.seed for c in cells], solver=ev.solver, steps=ev.steps,
                             dim=runs[0].standardizer.dim, precision=precision)
    sample_seconds = time.perf_counter() - tic
    samples = [save_samples(cell, study_dir, run, z) for cell, run, z in zip(cells, runs, zs)]

    tic = time.perf_counter()
    spaces = [evaluation_space(cell, run, z) for cell, run, z in zip(cells, runs, zs)]  # (z, train, held-out, held-out rows)
    tables = [_table(space, ev, device) for space in spaces]
    metrics_seconds = time.perf_counter() - tic
    nlls = _group_nll(cells, runs, field, [s[3] for s in spaces]) if ev.nll != "off" else [None] * K
    nll_seconds = time.perf_counter() - tic - metrics_seconds
    extras = [cell_extras(run, ev, s, space[3], straightness=False) for run, s, space in zip(runs, samples, spaces)]
    if ev.straightness_rows > 0:
        for extra, measured in zip(extras, _group_straightness(flows, ev, runs[0].standardizer.dim)):
            extra.update(measured)
    eval_seconds = time.perf_counter() - tic
    timing = {
        "nfe": nfe,
        "sample_seconds": sample_seconds / K,
        "samples_per_s": K * ev.n_samples / max(sample_seconds, 1e-9),
        "metrics_seconds": metrics_seconds / K,
        "nll_seconds": nll_seconds / K,
        "eval_seconds": eval_seconds / K,
        "group_eval_seconds": sample_seconds + eval_seconds,
        "eval_group_size": K,
        "cell_seconds": (time.perf_counter() - started) / K,
    }
    return [cell_outcome(cell, study_dir, training, table, nll, {**timing, **extra})
            for cell, training, table, nll, extra in zip(cells, trainings, tables, nlls, extras)]


def _table(space: tuple, ev, device: torch.device):
    """A cell's evaluation table from its evaluation space, the shared rows on ``device``."""
    from flowstudy.metrics.batched import shared_evaluation

    z, train_z, heldout_z, _ = space
    shared = shared_evaluation(train_z.to(device), heldout_z.to(device), ev.n_samples, seed=ev.eval_seed,
                               n_splits=ev.n_splits, n_dist_splits=ev.n_dist_splits)
    return shared.table(z.to(device))


def _group_straightness(flows: list, ev, dim: int) -> list[dict[str, float]]:
    """Each member's straightness from the noise rows :func:`flowstudy.study.cell.run_cell` draws, in one
    solve of the members' whole eigenbasis fields."""
    from flowstudy.study.cell import STRAIGHTNESS_STEPS, straightness_noise
    from flowstudy.study.stacked_field import StackedEigenField, members_straightness

    field = StackedEigenField(flows, whole=True)
    return members_straightness(field, straightness_noise(ev, dim).to(field.device), STRAIGHTNESS_STEPS)


def _group_nll(cells: Sequence[Cell], runs: list, field, heldouts: list[np.ndarray]) -> list:
    """Each member's :class:`~flowstudy.metrics.likelihood.HeldoutNLL` on its held-out rows (original space),
    as :func:`flowstudy.study.cell._nll` computes it one by one (factorised, exact divergence, RK4, the
    network in fp32 whatever its training precision)."""
    from flowstudy.data.resolve import load_train_val
    from flowstudy.metrics.batched import content_key
    from flowstudy.metrics.likelihood import GAUSSIAN_KINDS, beside_gaussians, gaussian_fit, gaussian_log_prob
    from flowstudy.study.stacked_field import members_log_prob

    started, ev, k = time.perf_counter(), cells[0].evaluation, field.k
    zs, trains, rotations = [], [], []
    for cell, run, heldout, flow in zip(cells, runs, heldouts, field.flows):
        cfg = cell.config
        train, _ = load_train_val(cfg.data, cfg.val, subset=None, split_seed=cfg.seed)
        zs.append(run.standardizer.transform(torch.as_tensor(np.asarray(heldout)).double()))  # [B, D]
        trains.append(run.standardizer.transform(torch.as_tensor(np.asarray(train.embeddings)).double()))  # [N, D]
        rotations.append(flow.rotation.double().cpu())  # [D, D]
    lead, nfe = members_log_prob(field, [z @ r[:, :k] for z, r in zip(zs, rotations)], solver=NLL_SOLVER, steps=ev.nll_steps)
    fits: dict[str, dict] = {}
    out = []
    for run, flow, z, z_train, r, lp_k in zip(runs, field.flows, zs, trains, rotations, lead):
        key = content_key(z_train)
        if key not in fits:
            fits[key] = {kind: gaussian_fit(z_train, kind) for kind in GAUSSIAN_KINDS}
        rest = gaussian_log_prob(z, flow.field.base.mean.cpu(), r[:, k:], flow.base.eigvals.cpu()[k:])  # [B]
        log_det = float(torch.log(run.standardizer.scale).sum())
        out.append(beside_gaussians(
            (lp_k + rest)[None], z, z_train, log_det, estimator="exact", probes=ev.nll_probes, solver=NLL_SOLVER,
            steps=ev.nll_steps, rtol=1e-5, atol=1e-5, nfe=nfe, device=str(field.device), started=started,
            graph=field.device.type == "cuda", fits=fits[key],
        ))
    return out


__all__ = ["NLL_SOLVER", "NotBatched", "evaluate_cells", "evaluate_group", "evaluation_groups"]
