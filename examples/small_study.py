"""A small study: two velocity networks, trained, sampled and evaluated the same way, and its report.

    python examples/small_study.py --out runs/examples/study
    python examples/small_study.py --out runs/examples/study --size small   # seconds

A study is a base training configuration plus axes; every cell (here: one architecture, one seed)
is trained, sampled and evaluated beside the baselines, results go to a SQLite store, and the
report (``report.md``, ``report.html``, figures) compares configurations over seeds. Running it
again continues where it stopped. The same study as a TOML file runs with
``flowstudy study FILE --out DIR`` and ``flowstudy report DIR``.
"""

from __future__ import annotations

import flowstudy as fs
from _common import parse_args

SIZES = {
    "full": dict(steps=400, n_samples=500, n_splits=20, archs=["mlp", "unet-tiny"]),
    "small": dict(steps=20, n_samples=48, n_splits=2, archs=["mlp-tiny", "unet-tiny"]),
}


def spec(size: dict) -> dict:
    """The study's tables, as a TOML file would hold them."""
    return {
        "study": {
            "name": "small",
            "description": f"MLP and U-Net, I-CFM, {size['steps']} steps, one seed.",
            "seeds": [0],
            "n_samples": size["n_samples"],
            "steps": 25,
            "executor": "local",
            "workers": 2,
            "n_splits": size["n_splits"],
            "n_dist_splits": min(5, size["n_splits"]),
            "straightness_rows": 32,
            "reference": size["archs"][0],
        },
        "base": {"data": "builtin:sonar-gsm8k-1k", "steps": size["steps"], "batch_size": 128, "val_every": max(10, size["steps"] // 4), "device": "cpu"},
        "axes": {"arch": size["archs"]},
    }


def main(argv: list[str] | None = None) -> fs.Study:
    args = parse_args(__doc__, argv)
    study = fs.run_study(spec(SIZES[args.size]), out=args.out, progress=False)
    print(study)
    paths = study.report()
    print(f"wrote {paths.markdown.name}, {paths.html.name} and {len(paths.figures)} figures")
    return study


if __name__ == "__main__":
    main()
