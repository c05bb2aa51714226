"""MkDocs hook: fail the build on raw Markdown left in a built page.

A page's visible text (code, preformatted blocks, scripts, styles and maths left out) must hold no
- list items run into a paragraph ("Steps:\\n- a\\n- b" with no blank line before the list renders as
  "Steps: - a - b");
- backtick (a code span that did not close, or a literal one);
- ``**`` (bold that did not render).

``find_raw_markup(html)`` is the check itself (tests/test_docs_markup.py runs it on known cases);
``python docs/hooks/markup_check.py build/site`` runs it over a built site.
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

_SKIP = re.compile(r"<(pre|code|script|style|kbd|textarea)\b.*?</\1>", re.S | re.I)
_MATH = re.compile(r'<(span|div) class="arithmatex">.*?</\1>', re.S)
_PARAGRAPH = re.compile(r"<p\b[^>]*>(.*?)</p>", re.S)
_TAG = re.compile(r"<[^>]+>")
_LIST_LINE = re.compile(r"\n[ \t]*(?:[-*+]|\d+\.)[ \t]+\S")
_RAW = (("`", "a stray backtick"), ("**", "unrendered bold (**)"))


def _snippet(text: str, at: int) -> str:
    return " ".join(text[max(0, at - 50): at + 50].split())


def find_raw_markup(page: str) -> list[str]:
    """What is wrong in the HTML ``page``, one line per problem (empty when the page is clean)."""
    body = _MATH.sub(" ", _SKIP.sub(" ", page))
    problems = []
    for paragraph in _PARAGRAPH.findall(body):
        text = html.unescape(_TAG.sub("", paragraph))
        match = _LIST_LINE.search(text)
        if match:
            problems.append(f"a list run into a paragraph (a blank line is missing before it): {_snippet(text, match.start())!r}")
    text = html.unescape(_TAG.sub(" ", body))
    for mark, what in _RAW:
        at = text.find(mark)
        if at >= 0:
            problems.append(f"{what}: {_snippet(text, at)!r}")
    return problems


def on_post_page(output: str, page, config) -> str:
    """Raise (fail the build) when the built ``page`` holds raw markup."""
    problems = find_raw_markup(output)
    if problems:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{page.file.src_uri}: raw markup in the built page:\n  " + "\n  ".join(problems[:8]))
    return output


if __name__ == "__main__":
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "build/site")
    bad = {p: find_raw_markup(p.read_text(encoding="utf-8")) for p in sorted(site.rglob("*.html"))}
    bad = {p: v for p, v in bad.items() if v}
    for path, problems in bad.items():
        print(f"{path}:\n  " + "\n  ".join(problems))
    sys.exit(1 if bad else 0)
