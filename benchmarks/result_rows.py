"""Rows of a GPU benchmark kept as they come: one variant's failure recorded beside the others'
numbers, and the rows so far written after each, so that a timeout loses only the variant it cut.
Imported by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this directory is on
the path)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def error_text(err: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters) for a row's "error"."""
    return f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"


def keep(rows: list[dict], row: dict, out: Path | None, name: str) -> None:
    """Append ``row``, print it as JSON, write all rows to ``out/name`` (when given) and free the
    CUDA caching allocator's blocks before the next variant."""
    rows.append(row)
    print(json.dumps(row), flush=True)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(json.dumps(rows, indent=2))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
