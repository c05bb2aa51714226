"""Every output path prints bracketed text as written (rich would read "[N, D]" as markup)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from flowstudy.cli import main, render_evaluation
from flowstudy.console import labelled, make_console, progress_text, styled
from flowstudy.errors import DataError

MESSAGE = "candidates must have shape [N, D]; got (8, 1024) in [study] [bold]x[/]"


def test_user_errors_keep_their_brackets(monkeypatch, capsys):
    import flowstudy.info

    def broken():
        raise DataError(MESSAGE)

    monkeypatch.setattr(flowstudy.info, "collect_info", broken)
    assert main(["info"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {MESSAGE}"


def test_internal_errors_keep_their_brackets(monkeypatch, capsys):
    import flowstudy.info

    def broken():
        raise ValueError(MESSAGE)

    monkeypatch.setattr(flowstudy.info, "collect_info", broken)
    assert main(["info"]) == 1
    assert f"internal error: ValueError: {MESSAGE} (rerun with --debug" in capsys.readouterr().err


def test_flags_and_evaluation_tables_keep_their_brackets(capsys):
    rows = {"model": {"fidelity": 1.5}, "gaussian [fit]": {"fidelity": 1.2}}
    table = SimpleNamespace(n_eval=10, to_rows=lambda: [{"row": name, **values} for name, values in rows.items()])
    evaluation = SimpleNamespace(table=table, flags=[MESSAGE], columns=lambda: [("fidelity", True)])
    render_evaluation(evaluation, f"title {MESSAGE}")
    out = capsys.readouterr().out
    assert f"FLAG: {MESSAGE}" in out and "gaussian [fit]" in out and "[N, D]" in out.split("\n")[0] + out


def test_study_failures_keep_their_brackets(capsys):
    from flowstudy.study.runner import _print_failures

    _print_failures([{"id": "arch=[mlp]", "error": MESSAGE}])
    err = capsys.readouterr().err
    assert f"arch=[mlp]: {MESSAGE}" in err and "1 cell(s) failed (retried" in err


def test_the_helpers_style_without_reading_markup(capsys):
    console = make_console()
    console.print(MESSAGE)
    console.print(styled(MESSAGE, "bold green"), labelled("warning:", "yellow", MESSAGE))
    out = capsys.readouterr().out.splitlines()
    assert out == [MESSAGE, f"{MESSAGE} warning: {MESSAGE}"]
    assert progress_text("[bold]study {}", "[x]") == r"[bold]study \[x]"


@pytest.mark.parametrize("cell", ["[N, D]", "[dim]no[/]"])
def test_table_cells_keep_their_brackets(cell, capsys):
    from rich.table import Table

    table = Table(title=cell)
    table.add_column(cell)
    table.add_row(cell)
    make_console().print(table)
    assert capsys.readouterr().out.count(cell) == 3
