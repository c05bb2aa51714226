"""``flowstudy info`` and ``flowstudy data inspect``."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from flowstudy import api
from flowstudy.console import labelled, make_console, styled

console = make_console()
data_app = typer.Typer(no_args_is_help=True, help="Inspect embedding sets.")


def register(app: typer.Typer) -> None:
    """Add ``info`` and the ``data`` sub-app to ``app``."""
    app.command("info")(info)
    data_app.command("inspect")(data_inspect)
    app.add_typer(data_app, name="data")


def info(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """Versions, devices, registered architectures, flows, solvers and compute backends."""
    report = api.system_info()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _render_info(report)


def data_inspect(
    spec: str = typer.Argument(..., help="builtin:NAME[:SPLIT], PATH or PATH:KEY"),
    texts: Optional[str] = typer.Option(None, help="Texts file (.jsonl with 'text' or .txt)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Size, norms, per-dimension spread, near-constant dimensions, duplicates, NaN check."""
    report = api.inspect_dataset(spec, texts=texts)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    _render_inspect(report)


def _render_info(report: dict) -> None:
    console.print(labelled(f"flowstudy {report['flowstudy']}", "bold", f" python {report['python']}  torch {report['torch']}  numpy {report['numpy']}"))
    dev = report["devices"]
    cuda = ", ".join(dev["cuda_devices"]) if dev["cuda_available"] else "no CUDA device"
    console.print(f"devices: cpu ({dev['cpu_threads']} torch threads, {dev['cpu_count']} cores); {cuda}")
    extras = Table(title="optional extras")
    for col in ("package", "extra", "installed"):
        extras.add_column(col)
    for pkg, row in report["optional"].items():
        extras.add_row(pkg, row["extra"], row["version"] or styled("no", "dim"))
    console.print(extras)
    archs = Table(title="architectures (create_model)")
    archs.add_column("name")
    archs.add_column("parameters (D=1024)", justify="right")
    for row in report["architectures"]:
        archs.add_row(row["name"], f"{row['parameters']:,}")
    console.print(archs)
    backends = Table(title="Mamba compute backends")
    for col in ("backend", "available", "why"):
        backends.add_column(col)
    for name, row in report["mamba_backends"].items():
        backends.add_row(name, "yes" if row["available"] else "no", row["reason"])
    console.print(backends)
    console.print(f"flows: {', '.join(report['flows'])}")
    console.print(f"solvers: {', '.join(report['solvers'])}")


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


__all__ = ["register"]
