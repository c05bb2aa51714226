"""What every example shares: the ``--out`` / ``--size`` arguments and figure saving.

``--size small`` runs in a few seconds (the test suite runs each example so); ``--size full`` is
what the documentation build runs and shows. ``FLOWSTUDY_EXAMPLE_SIZE`` sets the default.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def parse_args(doc: str, argv: list[str] | None = None) -> argparse.Namespace:
    """--out DIR (created) and --size {small,full}."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="Folder for runs, samples and figures.")
    parser.add_argument("--size", choices=("small", "full"), default=os.environ.get("FLOWSTUDY_EXAMPLE_SIZE", "full"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG (100 dpi) and close it."""
    fig.savefig(path, dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def pca_axes(reference):
    """The top two principal directions of ``reference`` [N, D] and its mean: (mean [D], axes [D, 2])."""
    import numpy as np

    mean = reference.mean(axis=0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    return mean, vt[:2].T


def held_out_spec(name: str = "sonar-gsm8k-1k") -> str:
    """The builtin set's evaluation split: ``test`` where the package ships one, else ``val``."""
    from flowstudy.data import BUILTIN_DATASETS

    return f"builtin:{name}:test" if "test" in BUILTIN_DATASETS[name][1] else f"builtin:{name}:val"
