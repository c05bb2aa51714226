"""The ``flowstudy`` command: a thin layer over :mod:`flowstudy.api` that parses and prints.

One module per group of commands (``data_commands``: info, data inspect; ``run_commands``: train,
sample, reconstruct, evaluate; ``study_commands``: study, report; ``optimize_commands``:
optimize run/ask/tell/report), assembled in ``app``. The modules reach the library only
through :mod:`flowstudy.api`.
"""

from __future__ import annotations

from flowstudy.cli.app import app, main
from flowstudy.cli.run_commands import render_evaluation

__all__ = ["app", "main", "render_evaluation"]
