"""``flowstudy train``'s options, generated from the training options of the API.

Each :class:`~flowstudy.api.TrainOption` (a TrainConfig field with its type and documentation)
becomes one option: ``batch_size`` -> ``--batch-size``; dict fields take repeatable KEY=VALUE
pairs (``model`` -> ``--model-opt``, ``flow_options`` -> ``--flow-opt``), list fields repeat,
booleans get ``--X/--no-X``. An unset option is "not given": the recipe and the config file decide.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Optional

import typer

from flowstudy import api
from flowstudy.options import parse_options

FLAG_NAMES = {"model": "--model-opt", "flow_options": "--flow-opt"}
"""Options whose flag is not the field's name (dict fields take KEY=VALUE pairs)."""


def option_flag(option: api.TrainOption) -> str:
    """The command-line flag of a training option."""
    return FLAG_NAMES.get(option.name, "--" + option.name.replace("_", "-"))


def _base_type(hint: Any) -> Any:
    """int | None -> int; the type the option parses."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _cli_type(option: api.TrainOption) -> Any:
    """The type annotation typer reads: Optional[...] of the field's type, lists of its items,
    KEY=VALUE strings for a dict field."""
    hint = _base_type(option.type)
    return Optional[list[str]] if typing.get_origin(hint) is dict else Optional[hint]


def parameters() -> list[inspect.Parameter]:
    """One keyword parameter per training option, named as the field, for typer to read."""
    params = []
    for option in api.train_options():
        flag = option_flag(option)
        decls = (f"{flag}/--no-{flag[2:]}",) if _base_type(option.type) is bool else (flag,)
        help_text = option.help + (" KEY=VALUE; repeatable." if typing.get_origin(_base_type(option.type)) is dict else "")
        default = typer.Option(None, *decls, help=help_text, show_default=False)
        params.append(inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=_cli_type(option)))
    return params


def values(given: dict[str, Any]) -> dict[str, Any]:
    """Python values of the options given on the command line (None or empty: not given)."""
    out = {}
    for option in api.train_options():
        value = given.get(option.name)
        if typing.get_origin(_base_type(option.type)) is dict:
            value = parse_options(value, option_flag(option)) or None
        elif isinstance(value, (list, tuple)) and typing.get_origin(_base_type(option.type)) is list:
            value = list(value) or None
        out[option.name] = value
    return out


__all__ = ["option_flag", "parameters", "values"]
