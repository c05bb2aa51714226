"""Resolve a training spec to (train, held-out) embedding sets, the way every command does."""

from __future__ import annotations

from pathlib import Path

from flowstudy.data.loading import EmbeddingSet, _split_spec, load_dataset
from flowstudy.data.splits import nested_subsets, split_indices
from flowstudy.data.validation import check_same_dim
from flowstudy.errors import DataError


def default_val_spec(data_spec: str) -> str | None:
    """The held-out split that sits beside a training split, if the spec names one.

    ``builtin:NAME`` / ``builtin:NAME:train`` -> ``builtin:NAME:val``; ``DIR:train`` -> ``DIR:val``
    when ``DIR`` holds a val file. None otherwise.
    """
    if data_spec.startswith("builtin:"):
        name, _, split = data_spec[len("builtin:") :].partition(":")
        return f"builtin:{name}:val" if split in ("", "train") else None
    path, key = _split_spec(data_spec)
    if path.is_dir() and key == "train" and any(Path(path).glob("val.*")):
        return f"{path}:val"
    return None


def default_test_spec(data_spec: str) -> str | None:
    """The test split beside a training split, if the spec names one.

    ``builtin:NAME`` / ``builtin:NAME:train`` -> ``builtin:NAME:test`` when NAME ships one;
    ``DIR:train`` -> ``DIR:test`` when ``DIR`` holds a test file. None otherwise.
    """
    from flowstudy.data.builtin import BUILTIN_DATASETS

    if data_spec.startswith("builtin:"):
        name, _, split = data_spec[len("builtin:") :].partition(":")
        has_test = "test" in BUILTIN_DATASETS.get(name, ("", ()))[1]
        return f"builtin:{name}:test" if has_test and split in ("", "train") else None
    path, key = _split_spec(data_spec)
    if path.is_dir() and key == "train" and any(Path(path).glob("test.*")):
        return f"{path}:test"
    return None


def load_train_val(
    data_spec: str,
    val_spec: str | None = None,
    *,
    subset: int | None = None,
    subset_seed: int = 0,
    split_seed: int = 0,
    val_fraction: float = 0.1,
) -> tuple[EmbeddingSet, EmbeddingSet]:
    """Training set (optionally a nested subset) and held-out set with matching dimension.

    Without a val spec and without a split beside the data, ``val_fraction`` of the rows are held
    out at random (seeded by ``split_seed``) — before any subset is taken, so subsets never see
    held-out rows.
    """
    train = load_dataset(data_spec)
    val_spec = val_spec or default_val_spec(data_spec)
    if val_spec is not None:
        val = load_dataset(val_spec)
        check_same_dim({train.source: train.dim, val.source: val.dim})
    else:
        if train.n < 20:
            raise DataError(f"{train.source}: {train.n} rows are too few to hold out a validation split; pass --val")
        parts = split_indices(train.n, {"train": 1 - val_fraction, "val": val_fraction}, seed=split_seed)
        train, val = train.subset(parts["train"], "train"), train.subset(parts["val"], "val")
    if subset is not None:
        if subset > train.n:
            raise DataError(f"{train.source}: subset of {subset} rows requested but the training set has {train.n}")
        train = train.subset(nested_subsets(train.n, [subset], seed=subset_seed)[subset], f"subset{subset}")
    return train, val
