"""Rich consoles shared by the commands, and the one rule for what they print: words stay words.

A console made here reads no markup: every string printed through it — a message, a table cell,
a title — shows exactly as written, so "candidates must have shape [N, D]" keeps its brackets.
Style is given as style, never spelt into the text: :func:`labelled` (``error:`` in bold red before
a message), :func:`styled` (a table cell in bold green), or ``console.print(text, style=...)``.
Progress-bar columns parse their own template: put user text into one with :func:`progress_text`.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.text import Text

_PIPE_WIDTH = 160  # logs and CI: rich would otherwise wrap tables at 80 columns


def make_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that prints strings literally (no markup), wide when piped."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else _PIPE_WIDTH, markup=False)


def styled(text: str, style: str) -> Text:
    """``text`` shown in ``style`` (e.g. "bold green"), its characters kept as they are."""
    return Text(str(text), style=style)


def labelled(label: str, style: str, message: object) -> Text:
    """``label`` in ``style``, a space, then ``message`` as written: ``labelled("error:", "bold red", err)``."""
    return Text.assemble((label, style), " ", str(message))


def progress_text(template: str, *values: object) -> str:
    """A progress column's markup template with ``values`` escaped into its ``{}`` places:
    ``TextColumn(progress_text("[bold]study {}", name))``."""
    return template.format(*(escape(str(v)) for v in values))


__all__ = ["escape", "labelled", "make_console", "progress_text", "styled"]
