"""The results store of a study: one SQLite row per cell, written in a transaction.

    cells(id PRIMARY KEY, status 'done' | 'failed', payload JSON, attempts,
          started_at, finished_at)

A done row's payload is the cell's flat result dict; a failed row's is
``{"error": ..., "traceback": ...}``. Each write is one statement inside one transaction,
so a study killed at any moment leaves either the old row or the new one, never half of
either. Readers and writers open a fresh connection per call, so the file can be inspected
while a study runs. Exports (``results.csv``, ``results.jsonl``) are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterable

from flowstudy.io import atomic_write_text

STORE_NAME = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    started_at REAL,
    finished_at REAL NOT NULL
)
"""

_UPSERT = """
INSERT INTO cells (id, status, payload, attempts, started_at, finished_at) VALUES (?, ?, ?, 1, ?, ?)
ON CONFLICT(id) DO UPDATE SET
    status = excluded.status, payload = excluded.payload, attempts = cells.attempts + 1,
    started_at = excluded.started_at, finished_at = excluded.finished_at
"""


class ResultStore:
    """Results of a study's cells in ``path`` (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as conn:
            conn.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60.0)

    def _transaction(self):
        """A connection whose ``with`` block commits on success and rolls back on error."""
        return _Transaction(self._connect())

    # ------------------------------------------------------------------ writes
    def record_result(self, cell_id: str, result: dict[str, Any], started_at: float | None = None) -> None:
        """Store ``result`` as the done row of ``cell_id`` (replacing a failed one)."""
        self._write(cell_id, "done", _dumps(result), started_at)

    def record_failure(self, cell_id: str, error: str, traceback: str = "", started_at: float | None = None) -> None:
        """Store the error of ``cell_id``; the next run of the study retries it."""
        self._write(cell_id, "failed", _dumps({"error": error, "traceback": traceback}), started_at)

    def _write(self, cell_id: str, status: str, payload: str, started_at: float | None) -> None:
        with self._transaction() as conn:
            conn.execute(_UPSERT, (cell_id, status, payload, started_at, time.time()))

    # ------------------------------------------------------------------ reads
    def done_ids(self) -> set[str]:
        """Ids of the cells recorded as done."""
        return {row[0] for row in self._query("SELECT id FROM cells WHERE status = 'done'")}

    def failed_ids(self) -> set[str]:
        """Ids of the cells recorded as failed."""
        return {row[0] for row in self._query("SELECT id FROM cells WHERE status = 'failed'")}

    def rows(self) -> dict[str, dict[str, Any]]:
        """id -> {status, payload (decoded), attempts, started_at, finished_at}."""
        query = "SELECT id, status, payload, attempts, started_at, finished_at FROM cells ORDER BY finished_at"
        return {
            r[0]: {"status": r[1], "payload": json.loads(r[2]), "attempts": r[3], "started_at": r[4], "finished_at": r[5]}
            for r in self._query(query)
        }

    def results(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Payloads of the done cells, in the order of ``ids`` (default: as recorded)."""
        done = {k: v["payload"] for k, v in self.rows().items() if v["status"] == "done"}
        order = list(done) if ids is None else [i for i in ids if i in done]
        return [done[i] for i in order]

    def failures(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """``{"id", "error", "traceback", "attempts"}`` of the failed cells."""
        failed = {k: v for k, v in self.rows().items() if v["status"] == "failed"}
        order = list(failed) if ids is None else [i for i in ids if i in failed]
        return [{"id": i, **failed[i]["payload"], "attempts": failed[i]["attempts"]} for i in order]

    def _query(self, sql: str) -> list[tuple]:
        with closing(self._connect()) as conn:
            return conn.execute(sql).fetchall()


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()


def _dumps(obj: Any) -> str:
    return json.dumps(_jsonable(obj), allow_nan=False, sort_keys=False)


def _jsonable(obj: Any) -> Any:
    """Non-finite floats -> None; tuples -> lists; numpy scalars -> Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---------------------------------------------------------------------------- exports
def export_results(results: list[dict[str, Any]], directory: str | Path) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.jsonl`` into ``directory`` (atomically).

    CSV columns are the union of the results' keys in first-seen order; lists and dicts
    are JSON-encoded, missing values empty.
    """
    directory = Path(directory)
    jsonl = directory / "results.jsonl"
    atomic_write_text(jsonl, "".join(_dumps(r) + "\n" for r in results))
    columns: list[str] = []
    for r in results:
        columns += [k for k in r if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: _csv_value(v) for k, v in _jsonable(r).items()})
    path_csv = directory / "results.csv"
    atomic_write_text(path_csv, buffer.getvalue())
    return path_csv, jsonl


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


__all__ = ["STORE_NAME", "ResultStore", "export_results"]
