"""The docs build's raw-markup check (docs/hooks/markup_check.py) on pages with and without faults."""

from __future__ import annotations

import importlib.util
from pathlib import Path

HOOK = Path(__file__).resolve().parents[1] / "docs" / "hooks" / "markup_check.py"
spec = importlib.util.spec_from_file_location("markup_check", HOOK)
markup_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(markup_check)


def test_a_clean_page_passes():
    page = """<p>Two lists:</p><ul><li>a</li><li>b</li></ul><p>Some <code>`x`</code> and <strong>bold</strong>.</p>
    <pre><code>- not a list **nor bold**</code></pre><p><span class="arithmatex">\\(a ** b\\)</span> and 3 - 2 = 1.</p>"""
    assert markup_check.find_raw_markup(page) == []


def test_a_list_run_into_a_paragraph_is_found():
    problems = markup_check.find_raw_markup("<p>Setting:\n- the default Mamba\n- 3000 steps</p>")
    assert len(problems) == 1 and problems[0].startswith("a list run into a paragraph") and "the default Mamba" in problems[0]
    assert markup_check.find_raw_markup("<p>Steps:\n1. train\n2. sample</p>")[0].startswith("a list run into")


def test_stray_backticks_and_raw_bold_are_found():
    assert markup_check.find_raw_markup("<p>the `flowstudy report command</p>")[0].startswith("a stray backtick")
    assert markup_check.find_raw_markup("<p>**not bold</p>")[0].startswith("unrendered bold")
