"""Datasets shipped inside the package (see ``builtin/*/DATA_CARD.md``)."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

from flowstudy.errors import DataError

# name -> (folder under flowstudy/data/builtin, available splits)
BUILTIN_DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sonar-gsm8k-1k": ("sonar-gsm8k-1k", ("train", "val", "test")),
}


def load(name_and_split: str) -> tuple[np.ndarray, list[str], str]:
    """``NAME`` or ``NAME:SPLIT`` -> (embeddings [N, D], texts, source label)."""
    name, _, split = name_and_split.partition(":")
    split = split or "train"
    if name not in BUILTIN_DATASETS:
        raise DataError(f"unknown builtin dataset '{name}'; available: {', '.join(sorted(BUILTIN_DATASETS))}")
    folder, splits = BUILTIN_DATASETS[name]
    if split not in splits:
        raise DataError(f"builtin:{name} has no split '{split}'; available: {', '.join(splits)}")
    root = resources.files("flowstudy.data") / "builtin" / folder
    with resources.as_file(root / "embeddings.npz") as path, np.load(path) as archive:
        array = archive[split]
    texts = [line for line in (root / f"{split}.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return array, [json.loads(line)["text"] for line in texts], f"builtin:{name}:{split}"
