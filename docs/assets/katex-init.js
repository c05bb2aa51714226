// Render the maths that pymdownx.arithmatex (generic mode) leaves as \( \) and \[ \] in
// span/div.arithmatex, with the KaTeX copy beside this file; re-run on Material's instant navigation.
function renderMaths(root) {
  for (const el of root.querySelectorAll(".arithmatex")) {
    renderMathInElement(el, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  }
}
if (typeof document$ !== "undefined") {
  document$.subscribe(({ body }) => renderMaths(body));
} else {
  document.addEventListener("DOMContentLoaded", () => renderMaths(document.body));
}
