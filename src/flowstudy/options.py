"""KEY=VALUE option lists of the command line (``--model-opt``, ``--flow-opt``, ``--opt``)."""

from __future__ import annotations

import json

from flowstudy.errors import ConfigError

__all__ = ["parse_options"]


def parse_options(pairs: list[str] | None, what: str) -> dict[str, object]:
    """KEY=VALUE pairs -> dict; values parsed as JSON when they can be (numbers, booleans, lists)."""
    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} must look like KEY=VALUE; got '{pair}'")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options
