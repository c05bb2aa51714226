"""The command line is a thin layer over flowstudy.api: what its modules import, and that every
training option reaches ``fit`` from the command line with its documentation."""

from __future__ import annotations

import ast
import types
import typing
from pathlib import Path

import pytest

import flowstudy
from flowstudy import api
from flowstudy.cli import app, main

CLI_DIR = Path(flowstudy.__file__).parent / "cli"
ALLOWED = {"flowstudy.api", "flowstudy.console", "flowstudy.errors", "flowstudy.options", "flowstudy.defaults", "flowstudy.io"}
"""What a CLI module may import of flowstudy, beside its own modules: the API and output-level helpers."""


def _flowstudy_imports(path: Path) -> set[str]:
    """Modules of flowstudy that a file imports (``from flowstudy import api`` counts as flowstudy.api)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("flowstudy")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flowstudy"):
            found |= {f"flowstudy.{a.name}" for a in node.names} if node.module == "flowstudy" else {node.module}
    return found


@pytest.mark.parametrize("path", sorted(CLI_DIR.glob("*.py")), ids=lambda p: p.name)
def test_cli_modules_reach_the_library_only_through_the_api(path):
    outside = {m for m in _flowstudy_imports(path) if m not in ALLOWED and not m.startswith("flowstudy.cli")}
    assert outside == set()


def test_the_import_check_sees_a_library_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from flowstudy.train import Trainer\n    from flowstudy import study\n")
    assert _flowstudy_imports(bad) == {"flowstudy.train", "flowstudy.study"}


def _train_params() -> dict:
    from typer.main import get_command

    return {p.name: p for p in get_command(app).commands["train"].params}


def test_every_training_option_has_a_flag_and_its_help():
    params, options = _train_params(), api.train_options()
    assert len(options) >= 40 and {o.name for o in options} <= set(params)
    for option in options:
        assert params[option.name].help and params[option.name].help.strip(), option.name


def _cli_value(option: api.TrainOption) -> tuple[list[str], object]:
    """(arguments, the Python value fit must receive) for one training option."""
    from flowstudy.cli.train_options import option_flag

    flag, hint = option_flag(option), option.type
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
    if origin is dict:
        return [flag, "width=3", flag, "name=x"], {"width": 3, "name": "x"}
    if origin is list:
        item = typing.get_args(hint)[0]
        values = ["noise:0.1", "mixup:0.2"] if item is str else [0.5, 1.5]
        return [a for v in values for a in (flag, str(v))], values
    if origin is tuple:
        return [flag, "0.8", "0.95"], (0.8, 0.95)
    if hint is bool:
        return [f"--no-{flag[2:]}"], False
    value = {str: f"v-{option.name}", int: 7, float: 0.25}[hint]
    return [flag, str(value)], value


def test_every_training_option_reaches_fit_from_the_command_line(monkeypatch, tmp_path):
    seen = {}

    def fake_fit(data, *, out, arch, val, config, resume, progress, **options):
        seen.update(options, data=data, arch=arch, val=val, out=out, progress=progress)
        raise flowstudy.errors.ConfigError("stop here")

    monkeypatch.setattr(api, "fit", fake_fit)
    args, expected = ["train", "--out", str(tmp_path / "r"), "--quiet"], {}
    for option in api.train_options():
        given, value = _cli_value(option)
        args += given
        expected[option.name] = value
    assert main(args) == 2
    assert {k: seen[k] for k in expected} == expected
    assert seen["progress"] is False


def test_unset_training_options_are_not_given(monkeypatch, tmp_path):
    seen = {}

    def fake_fit(data, **kw):
        seen.update(kw, data=data)
        raise flowstudy.errors.ConfigError("stop here")

    monkeypatch.setattr(api, "fit", fake_fit)
    assert main(["train", "--out", str(tmp_path / "r")]) == 2
    assert {k: v for k, v in seen.items() if k not in ("out", "config", "resume", "progress") and v is not None} == {}
