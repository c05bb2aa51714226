"""The ``flowstudy`` command.

Errors meant for the user (flowstudy's own exception types) print as one line and exit 2;
``--debug`` (anywhere on the command line) shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flowstudy.errors import FlowstudyError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Flow matching in embedding spaces.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect embedding sets.")
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """Versions, devices, registered architectures, flows, solvers and compute backends."""
    from flowstudy.info import collect_info

    report = collect_info()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    from flowstudy.info import render_info

    render_info(report, console)


@data_app.command("inspect")
def data_inspect(
    spec: str = typer.Argument(..., help="builtin:NAME[:SPLIT], PATH or PATH:KEY"),
    texts: Optional[str] = typer.Option(None, help="Texts file (.jsonl with 'text' or .txt)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Size, norms, per-dimension spread, near-constant dimensions, duplicates, NaN check."""
    from flowstudy.data import load_dataset
    from flowstudy.data.inspect import inspect_embeddings

    report = inspect_embeddings(load_dataset(spec, texts=texts, allow_nonfinite=True))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _render_inspect(report)


def _render_inspect(r: dict) -> None:
    table = Table(title=f"Embedding set {r['source']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    norm, std = r["norm"], r["dim_std"]
    table.add_row("rows (N)", str(r["n"]))
    table.add_row("dimension (D)", str(r["dim"]))
    table.add_row("texts", "yes" if r["has_texts"] else "no")
    table.add_row("non-finite rows", _list_or_none(r["nonfinite_rows"]))
    table.add_row("row L2 norm", f"mean {norm['mean']:.4g} ± {norm['std']:.2g} (min {norm['min']:.4g}, max {norm['max']:.4g})")
    table.add_row(
        "per-dim std",
        f"median {std['median']:.3g}; 1–99 %: {std['p01']:.3g}–{std['p99']:.3g}; min {std['min']:.3g}, max {std['max']:.3g}",
    )
    table.add_row("mean pairwise cosine", f"{r['mean_pairwise_cosine']:.3f}")
    near = r["near_constant_dims"]
    table.add_row(
        "near-constant dims",
        ", ".join(f"{d['dim']} (std {d['std']:.2g})" for d in near) if near else "none",
    )
    table.add_row("exact duplicate groups", _list_or_none(r["exact_duplicate_groups"]))
    pairs = r["near_duplicate_pairs"]
    shown = ", ".join(f"{p['i']}~{p['j']} ({p['cosine']:.3f})" for p in pairs[:5])
    table.add_row(f"near duplicates (cos ≥ {r['near_duplicate_cosine']})", f"{len(pairs)} pairs" + (f": {shown}" if pairs else ""))
    console.print(table)


def _list_or_none(items: list) -> str:
    return "none" if not items else ", ".join(map(str, items[:10])) + (" …" if len(items) > 10 else "")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    import click

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        result = app(args=args, prog_name="flowstudy", standalone_mode=False)
        return int(result or 0) if isinstance(result, int) else 0
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except FlowstudyError as err:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as err:  # a bug, not a user error: still one line unless --debug
        if debug:
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(err).__name__}: {err} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
