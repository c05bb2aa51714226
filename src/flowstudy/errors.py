"""The project's exception types, raised at user-facing edges.

Each subclasses the built-in exception a caller would otherwise expect, so
``except ValueError`` keeps working while the CLI can tell our messages (one clear
line) from bugs (a traceback).
"""

from __future__ import annotations


class FlowstudyError(Exception):
    """Base class of every error whose message is meant for the user."""


class DataError(FlowstudyError, ValueError):
    """Bad embedding or text input: the message names the file, field or rows."""


class ConfigError(FlowstudyError, ValueError):
    """An invalid configuration value or an unknown registry name."""


class CheckpointError(FlowstudyError, RuntimeError):
    """A checkpoint or run directory that cannot be used."""


class TrainingError(FlowstudyError, RuntimeError):
    """Training stopped for a reason the user must act on (NaN loss, out of memory)."""
