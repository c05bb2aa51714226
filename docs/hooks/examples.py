"""MkDocs hook: run every script in examples/ and make a page of its code, output and figures.

Each example runs as ``python examples/NAME.py --out DIR --size SIZE`` in a fresh process (SIZE
from ``FLOWSTUDY_DOCS_EXAMPLES``, default ``full``); a failing example fails the build. The page
``examples/NAME/index.md`` shows the script's docstring, its source, what it printed, and every
PNG it wrote under DIR (the runs it trained excepted), served beside the page so that relative
links in its output (a study report's ``figures/...``) resolve.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("train_sample_evaluate", "own_embeddings", "small_study", "guided_optimisation")
_OUTPUT = Path(tempfile.mkdtemp(prefix="flowstudy-docs-examples-"))  # lives for the build


def on_files(files: Files, config: Any) -> Files:
    size = os.environ.get("FLOWSTUDY_DOCS_EXAMPLES", "full")
    for name in EXAMPLES:
        out = _OUTPUT / name
        printed, seconds = _run(name, out, size)
        figures = sorted(p for p in out.rglob("*.png") if "runs" not in p.relative_to(out).parts)
        for png in figures:
            files.append(File.generated(config, f"examples/{name}/{png.relative_to(out).as_posix()}", abs_src_path=str(png)))
        report = out / "report.md"
        page = _page(name, printed, seconds, size, figures, out, report if report.exists() else None)
        files.append(File.generated(config, f"examples/{name}/index.md", content=page))
    return files


def _run(name: str, out: Path, size: str) -> tuple[str, float]:
    script = ROOT / "examples" / f"{name}.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    # run from the output folder so that the paths it prints are short and relative
    proc = subprocess.run(
        [sys.executable, str(script), "--out", out.name, "--size", size], cwd=out.parent, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise PluginError(f"examples/{name}.py failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout, time.perf_counter() - started


def _page(name: str, printed: str, seconds: float, size: str, figures: list[Path], out: Path, report: Path | None) -> str:
    source = (ROOT / "examples" / f"{name}.py").read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source)) or name
    title, _, rest = doc.partition("\n")
    lines = [
        f"# {title.rstrip('.')}",
        "",
        rest.strip(),
        "",
        f"This page was produced by running `examples/{name}.py --size {size}` when the documentation was "
        f"built ({seconds:.0f} s on the build machine); the test suite runs it with `--size small`.",
        "",
        "## Code",
        "",
        f"```python\n{source.rstrip()}\n```",
        "",
        "## Output",
        "",
        f"```text\n{printed.rstrip()}\n```",
        "",
    ]
    if report is not None:
        body = report.read_text(encoding="utf-8").split("\n", 1)[1]  # the report's own title dropped
        lines += ["## The report it wrote", "", re.sub(r"^(#+) ", r"#\1 ", body, flags=re.M), ""]
    shown = [p for p in figures if report is None or p.parent != out / "figures"]
    if shown:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in shown]
    return "\n".join(lines) + "\n"
