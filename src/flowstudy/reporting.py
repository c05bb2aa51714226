"""The shared look of flowstudy's reports: one stylesheet, tables, the figure canvas, series styles.

The study report (:mod:`flowstudy.study.report`) and the optimisation report
(:mod:`flowstudy.guidance.report`) render through this module, so that both read alike:

- :data:`CSS` and :func:`html_page`: one stylesheet; tables scroll sideways instead of overflowing.
- :class:`Table`: one table, rendered to Markdown or HTML, with significantly best cells in bold.
- :func:`figure` and :func:`save`: figures are drawn at the pixel size they are shown
  (:data:`FIGURE_WIDTH_PX`, the content column of the documentation site at a 1400-px window),
  with matplotlib's object API on the Agg canvas (no pyplot, no global state).
- :func:`series_styles`: colour, line style and marker, unique for every series of a figure.
- :func:`plain_ticks`: tick labels as plain decimals ("1.12", never "1.12×10⁰").
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

FIGURE_WIDTH_PX = 680
"""Width of every report figure in pixels: the docs' content column at a 1400-px window is 688 px."""
DPI = 100
FONT_SIZE = 9.0
COLOURS = (
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#8c564b", "#7f7f7f", "#bcbd22",
)
"""Okabe–Ito's colour-blind-safe eight, then brown and olive."""
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


class SeriesStyle(NamedTuple):
    """How one series is drawn: matplotlib colour, line style and marker."""

    colour: str
    linestyle: str
    marker: str


def series_styles(n: int) -> list[SeriesStyle]:
    """``n`` styles, no two alike: colours first, then line styles, then markers.

    Series i gets colour i mod 10, line style (i // 10) mod 4 and marker (i // 40) mod 8, so the
    first 10 series differ by colour and all of the first 320 by (colour, line style, marker).
    """
    if n > len(COLOURS) * len(LINE_STYLES) * len(MARKERS):
        raise ValueError(f"at most {len(COLOURS) * len(LINE_STYLES) * len(MARKERS)} distinguishable series; got {n}")
    k, m = len(COLOURS), len(COLOURS) * len(LINE_STYLES)
    return [SeriesStyle(COLOURS[i % k], LINE_STYLES[(i // k) % len(LINE_STYLES)], MARKERS[(i // m) % len(MARKERS)]) for i in range(n)]


# ----------------------------------------------------------------------------- figures
def figure(height_px: int, width_px: int = FIGURE_WIDTH_PX):
    """A constrained-layout matplotlib Figure of ``width_px`` × ``height_px`` at :data:`DPI`."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("reports draw their figures with matplotlib: pip install 'flowstudy[plot]'") from err
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    fig.set_layout_engine("constrained", h_pad=0.04, w_pad=0.04)
    return fig


def save(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG of exactly its figure size in pixels (no tight bounding box)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def style_axes(ax, grid_axis: str = "both") -> None:
    """Font sizes, a light grid and plain tick labels for one panel."""
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.title.set_fontsize(FONT_SIZE + 0.5)
    ax.xaxis.label.set_fontsize(FONT_SIZE)
    ax.yaxis.label.set_fontsize(FONT_SIZE)
    ax.grid(alpha=0.3, axis=grid_axis)
    plain_ticks(ax)


def plain_ticks(ax) -> None:
    """Tick labels as plain decimals with no offset or scientific notation, on linear and log axes."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        elif axis.get_scale() == "linear" and not isinstance(axis.get_major_formatter(), FuncFormatter):
            formatter = axis.get_major_formatter()
            if hasattr(formatter, "set_useOffset"):
                formatter.set_useOffset(False)
                formatter.set_scientific(False)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels of a PNG file, from its IHDR chunk."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# ----------------------------------------------------------------------------- tables
def fmt(v: float | None, digits: int = 4) -> str:
    """A number in ``digits`` significant figures; "–" for None, NaN or infinity."""
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


@dataclass
class Table:
    """Rendered text per cell, plus which cells are bold (the significantly best) and where the
    baseline rows start. ``note``: one line under the table (what bold and the marks mean)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    best: set[tuple[int, int]] = field(default_factory=set)
    separator_before: int | None = None  # index of the first baseline row
    note: str = ""
    align: str = ""  # per column "l" or "r"; default: the first column left, the others (numbers) right

    def _left(self, j: int) -> bool:
        return (self.align[j] == "l") if j < len(self.align) else j == 0

    def markdown(self, level: int = 3) -> str:
        """A Markdown table under a heading of ``level`` (0: no heading)."""
        lines = ([f"{'#' * level} {self.title}", ""] if level else []) + [
            "| " + " | ".join(_md_cell(h) for h in self.headers) + " |",
            "|" + "|".join(":---" if self._left(j) else "---:" for j in range(len(self.headers))) + "|",
        ]
        for i, row in enumerate(self.rows):
            cells = [f"**{_md_cell(c)}**" if (i, j) in self.best and c else _md_cell(c) for j, c in enumerate(row)]
            lines.append("| " + " | ".join(cells) + " |")
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def html(self, level: int = 3) -> str:
        """An HTML table inside a sideways-scrolling wrapper, under an ``<h{level}>`` heading."""
        text = lambda j: ' class="text"' if self._left(j) and j > 0 else ""  # noqa: E731
        head = "".join(f"<th{text(j)}>{html.escape(h)}</th>" for j, h in enumerate(self.headers))
        body = []
        for i, row in enumerate(self.rows):
            cls = ' class="baseline"' if self.separator_before is not None and i >= self.separator_before else ""
            cells = "".join(
                f'<td class="best">{html.escape(c)}</td>' if (i, j) in self.best else f"<td{text(j)}>{html.escape(c)}</td>"
                for j, c in enumerate(row)
            )
            body.append(f"<tr{cls}>{cells}</tr>")
        heading = f"<h{level}>{html.escape(self.title)}</h{level}>\n" if level else ""
        note = f'<p class="note">{html.escape(self.note)}</p>\n' if self.note else ""
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        return f'{heading}<div class="table-wrap">{table}</div>\n{note}'


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


# ----------------------------------------------------------------------------- HTML pages
CSS = """
:root { --fg: #1f2328; --muted: #57606a; --rule: #d0d7de; --best: #dafbe1; --base: #f6f8fa; --accent: #0969da; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 2rem auto; max-width: 80rem; padding: 0 1.5rem; line-height: 1.5; font-size: 15px; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; } h2 { font-size: 1.3rem; margin-top: 2rem;
     border-bottom: 1px solid var(--rule); padding-bottom: 0.2rem; } h3 { font-size: 1.05rem; margin-top: 1.4rem; }
p.meta, p.note { color: var(--muted); font-size: 0.88rem; }
.verdict { border-left: 4px solid var(--accent); background: #f6fbff; padding: 0.6rem 1rem; margin: 1rem 0; }
.verdict p { margin: 0.3rem 0; }
.table-wrap { overflow-x: auto; margin: 0.4rem 0 0.6rem; }
table { border-collapse: collapse; font-size: 0.85rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--rule); padding: 0.25rem 0.55rem; text-align: right; white-space: nowrap; }
th { background: var(--base); }
th:first-child, td:first-child { text-align: left; white-space: normal; min-width: 14rem; }
td.best { font-weight: 700; background: var(--best); }
th.text, td.text { text-align: left; white-space: normal; min-width: 12rem; }
tr.baseline td { color: var(--muted); background: var(--base); }
figure { margin: 1rem 0; } figcaption { color: var(--muted); font-size: 0.88rem; }
img { max-width: 100%; height: auto; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85em; }
pre { background: var(--base); padding: 0.6rem; overflow-x: auto; }
ul { padding-left: 1.4rem; } li { margin: 0.15rem 0; }
"""
"""The one stylesheet of every HTML report."""


def html_page(title: str, body: list[str]) -> str:
    """A self-contained HTML document: :data:`CSS` inline, ``body`` (HTML fragments) in order."""
    head = f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
    head += "<meta name='viewport' content='width=device-width, initial-scale=1'>"
    return head + f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"


def html_figure(path: Path, caption: str) -> str:
    """A figure with its PNG embedded as a data URI (shown at its own pixel width) and a caption."""
    width, height = png_size(path)
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption, quote=True)
    img = f"<img alt='{alt}' width='{width}' height='{height}' src='data:image/png;base64,{data}'>"
    return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def html_list(lines: list[str]) -> str:
    """A bulleted list of plain-text lines."""
    return "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 objective", "2 objectives" (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


__all__ = [
    "COLOURS",
    "CSS",
    "DPI",
    "FIGURE_WIDTH_PX",
    "SeriesStyle",
    "Table",
    "figure",
    "fmt",
    "html_figure",
    "html_list",
    "html_page",
    "plain_ticks",
    "plural",
    "png_size",
    "save",
    "series_styles",
    "style_axes",
]
