"""Packing a study's training runs into stacked groups (flowstudy.train.stacked).

Cells whose runs share a network, its shapes, batch size, precision and device — typically the
seeds of one configuration, its data-size subsets, its learning rates — are trained as one
stacked model: one group per worker task, so a GPU trains many runs in the time of a few. The
executor maps groups as it maps cells (a local process pool on this machine's GPU, or one Ray
task per group with the cell's GPU share). Runs whose step needs the host every step (exact OT
solves its assignment between two CUDA graphs; mixup's step runs eagerly) are grouped apart from
the others, so that the host's work holds up only their own group.

Each run is still an ordinary run directory; the cells' sampling and evaluation then find it
finished and go on as for a run trained alone. A group that fails leaves its runs to the cells,
which train them one by one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

from flowstudy.study.grid import Cell


def pack_cells(cells: Sequence[Cell], group_size: int) -> list[list[Cell]]:
    """One cell per training run, grouped by :func:`~flowstudy.train.stacked.group_key`, whether
    the step needs the host every step and the rows a step draws, in chunks of at most
    ``group_size``; in cell order. Runs with ``recipe = "auto"`` are left out (each trains alone,
    after its own search)."""
    from flowstudy.train.stacked import group_key

    by_key: dict[tuple, list[Cell]] = {}
    seen: set[str] = set()
    for cell in cells:
        if cell.run_name in seen or cell.config.recipe == "auto":  # its recipe search runs in Trainer.fit: trained alone
            continue
        seen.add(cell.run_name)
        by_key.setdefault((group_key(cell.config), _host_step(cell.config), _rows_per_batch(cell.config)), []).append(cell)
    return [members[i : i + group_size] for members in by_key.values() for i in range(0, len(members), group_size)]


def _rows_per_batch(config) -> int:
    """The rows a run's step draws: batch_size, or all of a smaller subset (the Trainer's Batcher)."""
    return config.batch_size if config.subset is None else min(config.batch_size, config.subset)


def _host_step(config) -> bool:
    """True when the run's step needs the host every step (exact OT's assignment, mixup's draws)."""
    from flowstudy.data import parse_augmentations
    from flowstudy.flows import create_flow
    from flowstudy.train.graph import host_work

    if config.flow == "reflow":
        return False
    return host_work(create_flow(config.flow, **config.flow_options), parse_augmentations(config.aug)) is not None


def train_cell_group(cells: Sequence[Cell], study_dir: str | Path, vectorise: bool | None = False) -> dict[str, Any]:
    """Train the runs of ``cells`` as one group, skipping finished runs and resuming unfinished ones.

    ``vectorise`` (StackedGroup's): False by default, so that each run draws what it would draw
    alone and a cell's results do not depend on how the study packed it; None draws for all
    members at once where they are homogeneous (fewer kernels per step on a GPU; each run then
    depends on its group's seeds, deterministically).

    Writes each run's training summary (as :func:`flowstudy.study.cell.train_run` does; the
    seconds are the group's; ``group_step`` says whether the group drew vectorised or per member,
    ``group_setup_seconds`` how long its setup, wait for other captures and capture took).
    Returns {"runs": [...], "seconds": ...}.
    """
    from flowstudy.io import atomic_write_json
    from flowstudy.study.cell import TRAIN_SUMMARY, training_summary
    from flowstudy.checkpoint import load_checkpoint
    from flowstudy.rundir import RunPaths
    from flowstudy.train.stacked import StackedGroup, train_group

    todo, resume = [], []
    for cell in cells:
        run_dir = Path(study_dir) / "runs" / cell.run_name
        last = RunPaths(run_dir).last
        if last.exists():
            if load_checkpoint(last).get("finished"):
                continue
            resume.append(True)
        else:
            if run_dir.exists():  # killed before its first checkpoint: nothing worth keeping
                shutil.rmtree(run_dir)
            resume.append(False)
        todo.append(cell)
    if not todo:
        return {"runs": [], "seconds": 0.0}
    run_dirs = [Path(study_dir) / "runs" / cell.run_name for cell in todo]
    configs = [cell.config for cell in todo]
    setup = {}
    if len(todo) > 1:
        group = StackedGroup(configs, run_dirs, vectorise=vectorise)
        results, step_kind, setup = group.fit(resume), group.step_kind, {"group_setup_seconds": group.setup_seconds}
    else:
        results, step_kind = train_group(configs, run_dirs, resume), "single"
    for run_dir, result, again in zip(run_dirs, results, resume):
        summary = {**training_summary(result, again), "group_size": len(todo), "group_step": step_kind, **setup}
        atomic_write_json(run_dir / TRAIN_SUMMARY, summary)
    return {"runs": [cell.run_name for cell in todo], "seconds": max(r.seconds for r in results)}


__all__ = ["pack_cells", "train_cell_group"]
