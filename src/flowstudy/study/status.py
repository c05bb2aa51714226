"""A running study's progress: STUDY/status.json (rewritten atomically at every event) and a line a person reads.

    {"study": "architectures", "state": "running", "phase": "evaluation", "pid": 4242, "host": "gpu-1",
     "started_at": "2026-12-06T21:40:00+00:00", "updated_at": "...", "elapsed_s": 301.4,
     "cells": {"total": 63, "done": 40, "failed": 0, "running": 12, "todo": 11},
     "tasks": {"phase": "evaluation", "total": 15, "done": 9, "failed": 0, "running": 6},
     "phases": {"training": {"seconds": 238.1, "complete": true}, "evaluation": {"seconds": 63.3, "complete": false}},
     "eta_phase_s": 42.2}

``state`` is running, finished, failed (some cells failed) or interrupted; ``phase`` training (the stacked
groups), evaluation (the cells, one task per cell or per evaluation group), report or done. ``tasks`` are the
current phase's executor tasks; ``running`` counts the tasks handed to the executor and not finished (at most
its workers), and the cells in them. ``eta_phase_s`` extrapolates the phase's finished tasks to the rest (None
before the first ends); the report's phase is not estimated. :func:`read_status` marks a running study whose
process is gone (killed) as ``stopped``; :func:`describe` gives the one line both the study and
``flowstudy study DIR --status`` print.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flowstudy.errors import ConfigError
from flowstudy.io import atomic_write_json

STATUS_FILE = "status.json"

PHASE_ORDER = ("training", "evaluation", "report")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StudyStatus:
    """Writes STUDY/status.json as a study goes (module docstring); ``echo``: also print each update's line."""

    def __init__(self, study_dir: str | Path, name: str, cells_total: int, cells_done: int, workers: int, echo: bool = False):
        self.path = Path(study_dir) / STATUS_FILE
        self.name, self.workers, self.echo = name, max(1, int(workers)), echo
        self.started, self.started_at = time.perf_counter(), _now()
        self.cells = {"total": cells_total, "done": cells_done, "failed": 0}
        self.phases: dict[str, dict[str, Any]] = {}
        self.state, self.phase_name = "running", "starting"
        self.tasks = {"total": 0, "done": 0, "failed": 0}
        self.task_sizes: list[int] = []  # cells per task of the current phase, in order
        self.phase_started = self.started
        self.write()

    def phase(self, name: str, task_sizes: list[int] | None = None) -> None:
        """Start phase ``name`` (training, evaluation, report, done) with tasks of these many cells each."""
        self._close_phase()
        self.phase_name, self.phase_started = name, time.perf_counter()
        self.task_sizes = list(task_sizes or [])
        self.tasks = {"total": len(self.task_sizes), "done": 0, "failed": 0}
        if name not in ("done",):
            self.phases[name] = {"seconds": 0.0, "complete": False}
        self.write()

    def task_done(self, cells_done: int = 0, cells_failed: int = 0, failed: bool = False) -> None:
        """A task of the current phase ended; ``cells_done``/``cells_failed``: the cells it settled."""
        self.tasks["done"] += 1
        self.tasks["failed"] += int(failed)
        self.cells["done"] += cells_done
        self.cells["failed"] += cells_failed
        self.write()

    def finish(self, state: str) -> None:
        """End the study: ``state`` finished, failed or interrupted."""
        self._close_phase()
        self.state = state
        if state != "interrupted":
            self.phase_name = "done"
        self.write()

    def _close_phase(self) -> None:
        if self.phase_name in self.phases:
            self.phases[self.phase_name] = {"seconds": time.perf_counter() - self.phase_started, "complete": True}

    def snapshot(self) -> dict[str, Any]:
        """The status as status.json holds it."""
        left = self.tasks["total"] - self.tasks["done"]
        running_tasks = min(self.workers, left) if self.state == "running" else 0
        running_cells = sum(self.task_sizes[self.tasks["done"] : self.tasks["done"] + running_tasks])
        if self.phase_name == "training":  # a group trains its runs; its cells are evaluated later
            running_cells = 0
        phase_seconds = time.perf_counter() - self.phase_started
        phases = dict(self.phases)
        if self.phase_name in phases and not phases[self.phase_name]["complete"]:
            phases[self.phase_name] = {"seconds": phase_seconds, "complete": False}
        eta = phase_seconds / self.tasks["done"] * left if self.tasks["done"] and left and self.state == "running" else None
        cells = {**self.cells, "running": running_cells}
        cells["todo"] = max(0, cells["total"] - cells["done"] - cells["failed"] - running_cells)
        return {
            "study": self.name, "state": self.state, "phase": self.phase_name, "pid": os.getpid(), "host": socket.gethostname(),
            "started_at": self.started_at, "updated_at": _now(), "elapsed_s": time.perf_counter() - self.started,
            "cells": cells, "tasks": {"phase": self.phase_name, **self.tasks, "running": running_tasks},
            "phases": phases, "eta_phase_s": eta if self.phase_name not in ("report", "done") else None,
        }

    def write(self) -> None:
        status = self.snapshot()
        atomic_write_json(self.path, status)
        if self.echo:
            from flowstudy.console import make_console

            make_console(stderr=True).print(describe(status), highlight=False)


def read_status(study_dir: str | Path) -> dict[str, Any]:
    """STUDY/status.json; a running study whose process is gone (on this host) reads ``stopped``."""
    path = Path(study_dir) / STATUS_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no status file (the study has not run with this version, or {study_dir} is not a study folder)")
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not a status file: {err}") from err
    if status.get("state") == "running" and status.get("host") == socket.gethostname() and not _alive(int(status.get("pid", 0))):
        status["state"] = "stopped"
    return status


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def describe(status: dict[str, Any]) -> str:
    """One line: study, state and phase, cells done / running / failed of the total, the phase's tasks,
    elapsed time and the phase's ETA (minutes:seconds)."""
    c, t = status["cells"], status["tasks"]
    head = f"study {status['study']} ({status['state']}): {status['phase']}"
    cells = f"cells {c['done']}/{c['total']} done, {c['running']} running, {c['failed']} failed"
    tasks = f"{t['phase']} tasks {t['done']}/{t['total']} ({t['running']} running, {t['failed']} failed)" if t["total"] else ""
    order = sorted(status["phases"].items(), key=lambda item: PHASE_ORDER.index(item[0]) if item[0] in PHASE_ORDER else len(PHASE_ORDER))
    phases = ", ".join(f"{name} {_clock(p['seconds'])}{'' if p['complete'] else '…'}" for name, p in order)
    eta = f"phase ETA {_clock(status['eta_phase_s'])}" if status.get("eta_phase_s") is not None else ""
    return "; ".join(part for part in (head, cells, tasks, f"elapsed {_clock(status['elapsed_s'])}", phases, eta) if part)


__all__ = ["STATUS_FILE", "StudyStatus", "describe", "read_status"]
