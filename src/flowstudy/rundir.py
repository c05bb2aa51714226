"""The layout of a run directory: what the trainer writes and :mod:`flowstudy.run` reads back.

    RUN_DIR/config.json             resolved TrainConfig + seed, versions
    RUN_DIR/metrics.jsonl           one JSON object per logged step / validation
    RUN_DIR/standardizer.pt         training-split statistics (also inside each checkpoint)
    RUN_DIR/checkpoints/{best,last}.pt
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path



@dataclass(frozen=True)
class RunPaths:
    """The paths inside a run directory (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        """``config.json``: the resolved TrainConfig, versions and total steps."""
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``: one JSON object per logged step or validation."""
        return self.root / "metrics.jsonl"

    @property
    def standardizer(self) -> Path:
        """``standardizer.pt``: the training split's statistics."""
        return self.root / "standardizer.pt"

    @property
    def checkpoints(self) -> Path:
        """The ``checkpoints`` folder."""
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        """``checkpoints/last.pt``: the latest state, for resuming."""
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        """``checkpoints/best.pt``: the state with the lowest validation loss."""
        return self.checkpoints / "best.pt"


__all__ = ["RunPaths"]
