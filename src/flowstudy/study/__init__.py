"""Studies: a base training configuration plus axes, run cell by cell, summarised in a report.

    from flowstudy.study import load_spec, run_study, write_report
    results = run_study("studies/quick.toml")          # -> studies/runs/quick/
    write_report("studies/runs/quick", reference="mlp")

Parts: ``spec`` (the TOML study file), ``grid`` (its cells, with stable ids), ``cell`` (train -> sample -> evaluate one
cell), ``store`` (SQLite results, CSV/JSONL exports), ``executors`` (local worker processes,
Ray), ``runner`` (resumable study runs), ``summary`` (over seeds, directions, significance),
``report`` and ``plots`` (markdown / self-contained HTML), ``commands`` (the CLI).
"""

from __future__ import annotations

from flowstudy.study.cell import run_cell
from flowstudy.study.executors import CellError, LocalExecutor, RayExecutor, make_executor
from flowstudy.study.report import ReportPaths, write_report
from flowstudy.study.runner import run_study
from flowstudy.study.grid import Cell, EvalSettings
from flowstudy.study.spec import StudySpec, load_spec, parse_spec
from flowstudy.study.store import ResultStore, export_results

__all__ = [
    "Cell",
    "CellError",
    "EvalSettings",
    "LocalExecutor",
    "RayExecutor",
    "ReportPaths",
    "ResultStore",
    "StudySpec",
    "export_results",
    "load_spec",
    "make_executor",
    "parse_spec",
    "run_cell",
    "run_study",
    "write_report",
]
