"""MkDocs hook: the CLI reference page (cli.md), generated from the typer app at build time.

Every command, its usage line, help text and a table of its arguments and options, read from
the click command that typer builds, so the page cannot drift from ``flowstudy --help``.
"""

from __future__ import annotations

from typing import Any, Iterator

from mkdocs.structure.files import File, Files

PAGE = "cli.md"


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, PAGE, content=cli_markdown()))
    return files


def cli_markdown() -> str:
    """The whole reference as Markdown."""
    from typer.main import get_command

    from flowstudy.cli import app

    root = get_command(app)
    ctx = root.context_class(root, info_name="flowstudy")
    lines = [
        "# Command-line reference",
        "",
        "Generated from the `flowstudy` command at documentation build time. Every command also takes "
        "`--debug` (anywhere on the line) to show a traceback instead of the one-line error; "
        "the Python functions behind the commands are in the [API reference](reference/api.md).",
        "",
        f"**Usage:** `flowstudy {' '.join(root.collect_usage_pieces(ctx))}`",
        "",
    ]
    for path, command, sub_ctx in _walk(root, ctx, "flowstudy"):
        lines += _command_section(path, command, sub_ctx)
    return "\n".join(lines) + "\n"


def _walk(group, ctx, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(full name, command, context) of every leaf command, depth first, in listing order."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub_ctx = command.context_class(command, info_name=name, parent=ctx)
        if hasattr(command, "list_commands"):
            yield from _walk(command, sub_ctx, f"{path} {name}")
        else:
            yield f"{path} {name}", command, sub_ctx


def _command_section(path: str, command, ctx) -> list[str]:
    help_text = (command.help or "").strip()
    lines = [f"## `{path}`", "", help_text, "", f"```\n{path} {' '.join(command.collect_usage_pieces(ctx))}\n```", ""]
    rows = [_param_row(p, ctx) for p in command.params if p.name != "help" and not getattr(p, "hidden", False)]
    if rows:
        lines += ["| argument / option | description |", "| --- | --- |", *rows, ""]
    return lines


def _param_row(param, ctx) -> str:
    """One table row from the help record ``flowstudy CMD --help`` prints (names, metavar, help, default)."""
    record = param.get_help_record(ctx) or (param.human_readable_name, getattr(param, "help", None) or "")
    names, help_text = record
    if param.param_type_name == "argument":
        names += " (argument)"
    return f"| `{names}` | {_escape(help_text)} |"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
