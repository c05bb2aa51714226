"""The shared look of reports: series styles, tables, figure sizes, plain ticks, plurals."""

from __future__ import annotations

import pytest

from flowstudy.reporting import FIGURE_WIDTH_PX, Table, figure, html_page, plural, png_size, save, series_styles


def test_no_two_series_look_alike():
    styles = series_styles(320)
    assert len(set(styles)) == 320
    assert len({s.colour for s in styles[:10]}) == 10  # the first ten differ by colour alone
    assert len({(s.colour, s.linestyle) for s in styles[:40]}) == 40
    with pytest.raises(ValueError, match="at most 320"):
        series_styles(321)


def test_figures_are_saved_at_their_pixel_size(tmp_path):
    fig = figure(300)
    ax = fig.subplots()
    ax.plot([1, 2], [1.12, 1.13])
    assert png_size(save(fig, tmp_path / "f.png")) == (FIGURE_WIDTH_PX, 300)


def test_table_markdown_bolds_and_escapes():
    t = Table("T", ["name", "x"], [["a|b", "1"], ["c", "2"]], best={(1, 1)}, note="bold: best")
    md = t.markdown().splitlines()
    assert md[0] == "### T" and md[2] == "| name | x |" and md[3] == "|:---|---:|"
    assert md[4] == "| a\\|b | 1 |" and md[5] == "| c | **2** |" and md[-1] == "bold: best"
    page = html_page("T", [t.html()])
    assert '<td class="best">2</td>' in page and "class=\"table-wrap\"" in page and "<style>" in page
    words = Table("W", ["objective", "score", "text"], [["a", "0.5", "some words"]], align="lrl")
    assert words.markdown().splitlines()[3] == "|:---|---:|:---|" and '<td class="text">some words</td>' in words.html()


def test_plurals():
    assert [plural(1, "objective"), plural(2, "objective"), plural(0, "prior"), plural(3, "series", "series")] == [
        "1 objective", "2 objectives", "0 priors", "3 series"]
