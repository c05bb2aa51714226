"""Rich consoles shared by the commands: wide enough for the tables when output is not a terminal."""

from __future__ import annotations

import sys

from rich.console import Console

_PIPE_WIDTH = 160  # logs and CI: rich would otherwise wrap tables at 80 columns


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else _PIPE_WIDTH)
