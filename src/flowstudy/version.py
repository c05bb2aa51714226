"""The package's version, and the versions a run records beside its config.

A low module: the trainer and checkpoints read the version here, not from the package top.
"""

from __future__ import annotations

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """flowstudy, torch, numpy and Python versions, as a run's config.json records them."""
    import platform

    import numpy
    import torch

    return {"flowstudy": __version__, "torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


__all__ = ["__version__", "versions"]
