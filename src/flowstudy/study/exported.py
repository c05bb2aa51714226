"""A study read back from its exports: ``results.csv`` beside the study file ``spec.toml``.

Committed results (``docs/results/*/``) keep these two files, not the study folder's SQLite store
and ``study.json``; :func:`load_exported` rebuilds what the report needs from them. The cells'
axis values come from the CSV's columns of the axes the study file names (what was run); where a
column is missing, from the study file's expansion today, matched by group label.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from flowstudy.errors import ConfigError

RESULTS_CSV = "results.csv"
SPEC_TOML = "spec.toml"


def parse_value(text: str) -> Any:
    """A CSV cell back to a value: "" None, "True"/"False" bool, numbers, JSON lists/dicts, else text."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def read_results_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a study's ``results.csv`` with typed values (NaN where a number was not finite)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{k: parse_value(v) for k, v in row.items()} for row in csv.DictReader(f)]
    for i, row in enumerate(rows):
        missing = [k for k in ("id", "group", "seed") if row.get(k) is None]
        if missing:
            raise ConfigError(f"{path}: row {i + 2} has no {', '.join(missing)}")
    return rows


def load_exported(study_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(meta like study.json, results, failures=[]) of a folder holding results.csv (and spec.toml)."""
    results = read_results_csv(study_dir / RESULTS_CSV)
    meta = _meta_from_spec(study_dir / SPEC_TOML)
    spec_values = {c["group"]: c["values"] for c in meta.get("cells", [])}
    axes = meta.get("axes") or []
    cells, seen = [], set()
    for r in results:
        # what was run (the CSV's columns) before what the study file expands to today
        values = {a: r.get(a) for a in axes} if all(a in r for a in axes) else spec_values.get(r["group"], {})
        cells.append({"id": r["id"], "group": r["group"], "run": r.get("run"), "seed": r["seed"], "axes": values, "values": values})
        seen.add(r["id"])
    planned = len(meta.get("cells", [])) if spec_values and all(r["group"] in spec_values for r in results) else len(cells)
    meta = {**meta, "cells": cells, "planned_cells": max(planned, len(cells))}
    meta.setdefault("name", study_dir.name)
    meta.setdefault("axes", axes)
    meta.setdefault("seeds", sorted({r["seed"] for r in results}))
    meta.setdefault("evaluation", _evaluation_from(results))
    for r in results:  # non-finite numbers were written empty; the summaries skip None
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
    return meta, results, []


def _meta_from_spec(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    from flowstudy.study.spec import load_spec

    try:
        return load_spec(path).to_dict()
    except Exception:  # a study file from an older version: axes from the CSV instead
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        values = tomllib.loads(path.read_text(encoding="utf-8"))
        study = values.get("study", {})
        axes = list(values.get("axes", {}))
        for extra in values.get("extra", []):
            axes += [a for a in extra.get("axes", {}) if a not in axes]
        return {"name": study.get("name", path.parent.name), "description": study.get("description", ""), "axes": axes,
                "seeds": study.get("seeds"), "reference": study.get("reference")}


def _evaluation_from(results: list[dict[str, Any]]) -> dict[str, Any]:
    first = results[0] if results else {}
    return {"n_samples": first.get("n_samples"), "solver": first.get("solver"), "steps": first.get("sample_steps"),
            "eval_seed": first.get("eval_seed")}


__all__ = ["load_exported", "parse_value", "read_results_csv"]
