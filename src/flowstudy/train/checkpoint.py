"""Checkpoints: one dict written atomically; loading says what is wrong with a bad file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import flowstudy
from flowstudy.errors import CheckpointError
from flowstudy.io import atomic_torch_save

FORMAT = "flowstudy-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "arch", "model_config", "model", "ema", "step", "config", "standardizer")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus format tags and the flowstudy version) via temp file + rename."""
    atomic_torch_save(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "flowstudy_version": flowstudy.__version__, **state},
        Path(path),
    )


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint; CheckpointError names the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, ...
        raise CheckpointError(
            f"{path}: cannot read checkpoint (truncated, corrupt or not a torch file): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        keys = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a flowstudy checkpoint (found {keys})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state['format_version']} is newer than this flowstudy "
            f"({flowstudy.__version__}) reads ({FORMAT_VERSION}); upgrade flowstudy"
        )
    return state
