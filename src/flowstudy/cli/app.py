"""The assembled ``flowstudy`` app and its entry point.

Errors meant for the user (flowstudy's own exception types) print as one line and exit 2;
``--debug`` (anywhere on the command line) shows the traceback instead.
"""

from __future__ import annotations

import sys

import typer

from flowstudy.cli import data_commands, optimize_commands, run_commands, study_commands
from flowstudy.console import labelled, make_console, styled
from flowstudy.errors import FlowstudyError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Flow matching in embedding spaces.")
for commands in (data_commands, run_commands, study_commands, optimize_commands):
    commands.register(app)

err_console = make_console(stderr=True)


def _cli_exceptions() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(usage errors, exits, aborts) of click and of the copy of click that typer >= 0.2x vendors."""
    import click

    usage, exits, aborts = [click.ClickException], [click.exceptions.Exit], [click.exceptions.Abort]
    try:
        from typer import exceptions as typer_exceptions
        from typer._click import exceptions as vendored

        usage.append(vendored.ClickException)
        exits.append(typer_exceptions.Exit)
        aborts.append(typer_exceptions.Abort)
    except ImportError:  # typer that uses click itself
        pass
    return tuple(usage), tuple(exits), tuple(aborts)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    usage_errors, exits, aborts = _cli_exceptions()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        result = app(args=args, prog_name="flowstudy", standalone_mode=False)
        return int(result or 0) if isinstance(result, int) else 0
    except exits as exit_:
        return exit_.exit_code
    except aborts:
        err_console.print("aborted")
        return 130
    except usage_errors as err:
        err.show()
        return err.exit_code
    except (FlowstudyError, ImportError) as err:  # ImportError: a missing optional extra, with its pip line
        if debug:
            raise
        err_console.print(labelled("error:", "bold red", err), highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as err:  # a bug, not a user error: still one line unless --debug
        if debug:
            raise
        err_console.print(
            labelled("internal error:", "bold red", f"{type(err).__name__}: {err} (rerun with --debug for the traceback)"),
            highlight=False,
            soft_wrap=True,
        )
        return 1


__all__ = ["app", "main"]
