"""Run a study: every cell not yet done, through an executor, into the results store.

    STUDY/spec.toml         the study file as given (copied at every run)
    STUDY/study.json        axes, seeds, reference and the expanded cells (the report reads it)
    STUDY/results.sqlite    one row per cell (done or failed)
    STUDY/results.{csv,jsonl}  the done cells in the study's cell order
    STUDY/runs/, STUDY/cells/  training runs and per-cell outputs (see flowstudy.study.cell)
    STUDY/group_training.json  with group_size > 1: the stacked-group training phase's wall time
    STUDY/status.json       the run's progress: phase, cells done / running / failed, ETA (flowstudy.study.status)

Running a study again continues it: done cells are skipped, failed ones retried, an
interrupted training run resumed from its last checkpoint. Cells are deterministic given
their seed on CPU, so a study killed mid-way and restarted yields the same results table as
one that ran through.

Local workers are started with "spawn": a script that calls :func:`run_study` must guard
its entry point with ``if __name__ == "__main__":`` (the workers import the main module).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from flowstudy.errors import ConfigError
from flowstudy.io import atomic_write_json, atomic_write_text
from flowstudy.study.cell import run_cell
from flowstudy.study.executors import CellError, StudyInterrupted, make_executor
from flowstudy.study.group_eval import evaluate_cells, evaluation_groups
from flowstudy.study.groups import pack_cells, train_cell_group
from flowstudy.study.spec import StudySpec, load_spec
from flowstudy.study.status import StudyStatus
from flowstudy.study.store import STORE_NAME, ResultStore, export_results

DEFAULT_ROOT = Path("studies") / "runs"


def run_study(
    spec: str | Path | StudySpec,
    study_dir: str | Path | None = None,
    executor: Any = None,
    address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    group_size: int | None = None,
    report: bool = False,
) -> list[dict[str, Any]]:
    """Run the cells of ``spec`` that are not done yet; returns the done cells' results.

    ``executor``: "local", "ray" or an object with ``map_cells`` (default: the spec's, or "ray"
    when ``address`` is given). ``study_dir`` defaults to ``studies/runs/<name>``. A cell that
    raises is recorded as failed with its error and traceback; the study goes on, and the
    next run retries it. ``group_size`` > 1 (default: the spec's) first trains the runs in
    stacked groups of up to that many (flowstudy.study.groups), one group per executor task, then
    evaluates the cells in groups of up to that many (flowstudy.study.group_eval). ``report``: write
    the report (flowstudy.study.report) once every cell is done. Progress goes to STUDY/status.json
    (flowstudy.study.status) and, with ``progress``, to the terminal, ending with the wall time.
    """
    if group_size is not None and group_size < 1:
        raise ConfigError(f"group_size must be >= 1; got {group_size}")
    spec = spec if isinstance(spec, StudySpec) else load_spec(spec)
    study_dir = Path(study_dir) if study_dir is not None else DEFAULT_ROOT / spec.name
    write_study_files(spec, study_dir)
    store = ResultStore(study_dir / STORE_NAME)
    done = store.done_ids()
    todo = [cell for cell in spec.cells if cell.id not in done]
    runner = _executor(spec, executor, address, workers) if todo else None
    status = StudyStatus(study_dir, spec.name, len(spec.cells), len(spec.cells) - len(todo), getattr(runner, "workers", 1), echo=progress)
    try:
        if todo:
            size = spec.group_size if group_size is None else group_size
            if size > 1:
                _train_groups(runner, pack_cells(todo, size), study_dir.resolve(), progress, status)
            _evaluate(runner, todo, size, study_dir.resolve(), store, status)
        ids = [cell.id for cell in spec.cells]
        results = store.results(ids)
        export_results(results, study_dir)
        failures = store.failures(ids)
        if report and results and not failures:
            from flowstudy.study.report import write_report

            status.phase("report")
            write_report(study_dir)
    except BaseException as err:
        status.finish("interrupted")
        if isinstance(err, StudyInterrupted):
            _print_interrupted(err, store, spec, study_dir)
        raise
    status.finish("failed" if failures else "finished")
    if progress:
        _print_end(status, failures)
    return results


def _evaluate(runner, todo: list, size: int, study_dir: Path, store: ResultStore, status: StudyStatus) -> None:
    """The evaluation phase: one task per cell (:func:`run_cell`), or with ``size`` > 1 one task per
    evaluation group (:func:`~flowstudy.study.group_eval.evaluate_cells`); every outcome recorded."""
    if size > 1:
        tasks = evaluation_groups(todo, size)
        fn = partial(evaluate_cells, study_dir=study_dir)
    else:
        tasks, fn = todo, partial(run_cell, study_dir=study_dir)
    status.phase("evaluation", [len(t) if isinstance(t, list) else 1 for t in tasks])
    for task, outcome in runner.map_cells(fn, tasks):
        cells = task if isinstance(task, list) else [task]
        outcomes = outcome if isinstance(outcome, list) else [outcome] * len(cells)
        for cell, result in zip(cells, outcomes):
            _record(store, cell, result)
        failed = sum(isinstance(r, BaseException) for r in outcomes)
        status.task_done(cells_done=len(cells) - failed, cells_failed=failed, failed=failed > 0)


def _print_end(status: StudyStatus, failures: list[dict[str, Any]]) -> None:
    from flowstudy.console import make_console

    if failures:
        _print_failures(failures)
    snapshot = status.snapshot()
    phases = ", ".join(f"{name} {p['seconds']:.1f} s" for name, p in snapshot["phases"].items())
    make_console().print(f"study {status.name}: wall time {snapshot['elapsed_s']:.1f} s ({phases or 'nothing to do'})", highlight=False)


GROUP_TRAINING = "group_training.json"
"""STUDY/group_training.json: the last run's group-training phase (groups, runs, wall seconds, failed groups,
whether it completed, and when each group finished), rewritten as each group ends."""


def _train_groups(runner, groups, study_dir: Path, progress: bool, status: StudyStatus | None = None) -> None:
    """Train each group's runs (one executor task per group); a failed group is reported and its
    runs are left to the cells, which train them one by one. The phase's wall time and failures
    go to STUDY/group_training.json (the study's training time apart from its evaluations)."""
    fn = partial(train_cell_group, study_dir=study_dir)
    started, failed, done = time.perf_counter(), [], []
    if status is not None:
        status.phase("training", [len(g) for g in groups])

    def record(complete: bool) -> None:  # after every group, so that an interrupted phase leaves its progress
        atomic_write_json(
            study_dir / GROUP_TRAINING,
            {"groups": len(groups), "runs": sum(len(g) for g in groups), "seconds": time.perf_counter() - started,
             "failed": failed, "complete": complete, "finished": done},
        )

    for group, outcome in runner.map_cells(fn, groups):
        done.append({"runs": [cell.run_name for cell in group], "seconds": time.perf_counter() - started})
        if isinstance(outcome, BaseException):
            names = [cell.run_name for cell in group]
            failed.append({"runs": names, "error": f"{type(outcome).__name__}: {outcome}"[:1000]})
            if progress:
                from flowstudy.console import make_console

                message = f"group training failed ({outcome}); its runs train one by one: {', '.join(names)}"
                make_console(stderr=True).print(message, highlight=False)
        record(complete=False)
        if status is not None:
            status.task_done(failed=isinstance(outcome, BaseException))
    record(complete=True)


def write_study_files(spec: StudySpec, study_dir: Path) -> None:
    """The spec (as written, when it came from a file) and its expansion, for later reading."""
    study_dir.mkdir(parents=True, exist_ok=True)
    if spec.text is not None:
        atomic_write_text(study_dir / "spec.toml", spec.text)
    atomic_write_json(study_dir / "study.json", spec.to_dict())


def _executor(spec: StudySpec, executor: Any, address: str | None, workers: int | None):
    if executor is not None and not isinstance(executor, str):
        return executor
    name = executor or ("ray" if address else spec.executor)
    return make_executor(
        name,
        workers=workers or spec.workers,
        address=address or spec.address,
        num_cpus_per_cell=spec.num_cpus_per_cell,
        num_gpus_per_cell=spec.num_gpus_per_cell,
    )


def _record(store: ResultStore, cell, outcome: Any) -> None:
    now = time.time()
    if isinstance(outcome, BaseException):
        err = outcome if isinstance(outcome, CellError) else CellError(f"{type(outcome).__name__}: {outcome}")
        started = now - err.seconds if err.seconds is not None else None
        store.record_failure(cell.id, err.message, err.traceback_text, started_at=started)
    else:
        seconds = outcome.get("cell_seconds")
        store.record_result(cell.id, outcome, started_at=now - seconds if seconds is not None else None)


def _print_interrupted(stop: StudyInterrupted, store: ResultStore, spec: StudySpec, study_dir: Path) -> None:
    """What an interrupt left: the cells saved, those stopped, how to resume (always printed)."""
    from flowstudy.console import labelled, make_console

    done = len(store.done_ids() & {cell.id for cell in spec.cells})
    stopped = f"; stopped {len(stop.running)} running cell(s): {', '.join(stop.running)}" if stop.running else ""
    make_console(stderr=True).print(
        labelled(f"{stop}:", "bold yellow", f"{done}/{len(spec.cells)} cells done and saved in {study_dir / STORE_NAME}{stopped} "
                 "(a cell that was training saved a resumable last.pt; one that was evaluating runs again); "
                 "run the same command again to resume"),
        highlight=False, soft_wrap=True,
    )


def _print_failures(failures: list[dict[str, Any]]) -> None:
    from flowstudy.console import labelled, make_console

    console = make_console(stderr=True)
    console.print(labelled(f"{len(failures)} cell(s) failed", "bold red", f"(retried on the next run; tracebacks in {STORE_NAME}):"))
    for f in failures:
        console.print(f"  {f['id']}: {f['error']}", highlight=False, soft_wrap=True)


__all__ = ["DEFAULT_ROOT", "run_study", "write_study_files"]
