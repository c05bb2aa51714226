"""Checkpoints: one dict written atomically; loading says what is wrong with a bad file."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from flowstudy.errors import CheckpointError
from flowstudy.io import atomic_torch_save
from flowstudy.version import __version__

FORMAT = "flowstudy-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "arch", "model_config", "model", "ema", "step", "config", "standardizer")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus format tags and the flowstudy version) via temp file + rename."""
    atomic_torch_save(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "flowstudy_version": __version__, **state},
        Path(path),
    )


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint; CheckpointError names the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if _REFUSED not in str(err):
            raise CheckpointError(f"{path}: cannot read checkpoint (corrupt or not a torch file): {err}") from None
        raise CheckpointError(_refusal(path, err)) from None
    except Exception as err:  # truncated zip, not a torch file, ...
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
            f"({__version__}) reads ({FORMAT_VERSION}); upgrade flowstudy"
        )
    return state


_REFUSED = "Weights only load failed"  # how torch's weights-only unpickler starts its refusals
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _refusal(path: Path, err: pickle.UnpicklingError) -> str:
    """Why the weights-only unpickler refused ``path``, without torch's advice to turn it off.

    A checkpoint holds tensors, numbers, strings and containers only; a reference to code (a
    function or class to call while unpickling) is what a malicious file needs to run commands.
    """
    found = _GLOBAL.search(str(err))
    if found is not None:
        return (
            f"{path}: refused: the file references {found.group(1)}, which a checkpoint never needs; "
            "it may be malicious. Load only checkpoints written by flowstudy from a source you trust"
        )
    # torch's first paragraph advises weights_only=False and its last points to its docs: neither is ours to give
    paragraphs = [p.strip() for p in str(err).split("\n\n") if p.strip()]
    reason = " ".join(p for p in paragraphs[1:] if "weights_only" not in p and not p.startswith("Check the documentation"))
    return f"{path}: refused: not a plain torch checkpoint of tensors and containers ({reason or 'unsupported content'})"
