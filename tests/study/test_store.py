"""Results store: done and failed rows, retries, transactions that survive a killed writer, exports."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import subprocess
import sys

import pytest

from flowstudy.study.store import ResultStore, export_results


def test_results_failures_and_done_ids(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.record_result("b", {"id": "b", "fidelity": 1.25, "flags": ["x"], "nan": math.nan})
    store.record_failure("a", "DataError: bad rows", "Traceback ...\nDataError: bad rows")
    assert store.done_ids() == {"b"} and store.failed_ids() == {"a"}
    assert store.results() == [{"id": "b", "fidelity": 1.25, "flags": ["x"], "nan": None}]  # NaN stored as null
    [failure] = store.failures()
    assert failure == {"id": "a", "error": "DataError: bad rows", "traceback": "Traceback ...\nDataError: bad rows", "attempts": 1}
    # a failed cell retried successfully becomes done; attempts count both tries
    store.record_result("a", {"id": "a"}, started_at=5.0)
    rows = ResultStore(tmp_path / "results.sqlite").rows()  # a second handle sees the same data
    assert rows["a"]["status"] == "done" and rows["a"]["attempts"] == 2 and rows["a"]["started_at"] == 5.0
    assert rows["a"]["finished_at"] >= rows["b"]["finished_at"]
    assert [r["id"] for r in store.results(["a", "zz", "b"])] == ["a", "b"]  # in the order asked, unknown ids skipped


def test_transaction_rolls_back_on_error(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    store.record_result("a", {"v": 1})
    with pytest.raises(RuntimeError):
        with store._transaction() as conn:
            conn.execute("UPDATE cells SET payload = '{\"v\": 2}' WHERE id = 'a'")
            conn.execute("INSERT INTO cells (id, status, payload, finished_at) VALUES ('b', 'done', '{}', 0)")
            raise RuntimeError("killed between two statements")
    assert store.results() == [{"v": 1}] and store.done_ids() == {"a"}


def test_a_writer_killed_mid_transaction_leaves_no_row(tmp_path):
    """SIGKILL after the INSERT but before COMMIT: the row is absent, the database intact."""
    path = tmp_path / "results.sqlite"
    ResultStore(path).record_result("kept", {"v": 1})
    script = (
        "import os, signal, sqlite3\n"
        f"conn = sqlite3.connect({str(path)!r})\n"
        "conn.execute(\"INSERT INTO cells (id, status, payload, finished_at) VALUES ('half', 'done', '{}', 0)\")\n"
        "conn.execute(\"UPDATE cells SET payload = 'garbage' WHERE id = 'kept'\")\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -9
    store = ResultStore(path)
    assert store.done_ids() == {"kept"} and store.results() == [{"v": 1}]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_status_is_constrained(tmp_path):
    store = ResultStore(tmp_path / "results.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        store._write("a", "running", "{}", None)


def test_exports_are_the_union_of_columns(tmp_path):
    results = [
        {"id": "a", "fidelity": 1.5, "flags": ["not better"], "subset": None},
        {"id": "b", "fidelity": math.inf, "coverage": 0.5, "flags": []},
    ]
    path_csv, path_jsonl = export_results(results, tmp_path)
    with path_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "fidelity", "flags", "subset", "coverage"]
    assert rows[0] == {"id": "a", "fidelity": "1.5", "flags": '["not better"]', "subset": "", "coverage": ""}
    assert rows[1]["fidelity"] == "" and rows[1]["coverage"] == "0.5"
    lines = [json.loads(line) for line in path_jsonl.read_text().splitlines()]  # strict JSON: no NaN/Infinity
    assert lines[1] == {"id": "b", "fidelity": None, "coverage": 0.5, "flags": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.jsonl"]  # no temp files left
