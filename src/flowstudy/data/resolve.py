"""Resolve a training spec to (train, held-out) embedding sets, the way every command does."""

from __future__ import annotations

from pathlib import Path

from flowstudy.data.loading import EmbeddingSet, _split_spec, load_dataset
from flowstudy.data.splits import nested_subsets, split_indices
from flowstudy.data.validation import check_same_dim
from flowstudy.errors import DataError


def default_val_spec(data_spec: str) -> str | None:
    """The validation split beside a training split, if there is one (:func:`sibling_spec`)."""
    return sibling_spec(data_spec, "val")


def sibling_spec(data_spec: str, split: str) -> str | None:
    """The spec of split ``split`` beside the training split ``data_spec``, if there is one.

    ``builtin:NAME[:train]`` -> ``builtin:NAME:SPLIT`` when NAME ships it; ``zoo:NAME[:train]`` ->
    ``zoo:NAME:SPLIT``; ``DIR:train`` -> ``DIR:SPLIT`` when ``DIR`` holds a SPLIT file. None otherwise.
    """
    from flowstudy.data.builtin import BUILTIN_DATASETS
    from flowstudy.data.zoo import ZOO_SPLITS

    for prefix, splits_of in (("builtin:", lambda name: BUILTIN_DATASETS.get(name, ("", ()))[1]), ("zoo:", lambda name: ZOO_SPLITS)):
        if data_spec.startswith(prefix):
            name, _, current = data_spec[len(prefix) :].partition(":")
            return f"{prefix}{name}:{split}" if current in ("", "train") and split in splits_of(name) else None
    path, key = _split_spec(data_spec)
    if path.is_dir() and key == "train" and any(Path(path).glob(f"{split}.*")):
        return f"{path}:{split}"
    return None


def default_test_spec(data_spec: str) -> str | None:
    """The test split beside a training split, if there is one (:func:`sibling_spec`)."""
    return sibling_spec(data_spec, "test")


def holdout_test(data: EmbeddingSet, fraction: float, seed: int) -> tuple[EmbeddingSet, EmbeddingSet]:
    """(rest, test): ``fraction`` of the rows held out at random, seeded by ``seed``.

    The rows of one file that a run never trains or validates on and that evaluation uses as
    its reference (``TrainConfig.test_fraction``); ``flowstudy.split`` gives the same rows.
    """
    if not 0 < fraction < 1:
        raise DataError(f"the test fraction must lie in (0, 1); got {fraction}")
    if round(data.n * fraction) < 1 or round(data.n * (1 - fraction)) < 1:
        raise DataError(f"{data.source}: {data.n} rows are too few to hold out a test fraction of {fraction}")
    parts = split_indices(data.n, {"rest": 1 - fraction, "test": fraction}, seed=seed)
    return data.subset(parts["rest"], "train"), data.subset(parts["test"], "test")


def needs_test_holdout(data_spec: str, val_spec: str | None = None) -> bool:
    """True for data given as one file: no validation set named and no validation or test split
    beside it. A run then holds test rows out of it (else evaluation compares with those splits)."""
    return val_spec is None and sibling_spec(data_spec, "test") is None and sibling_spec(data_spec, "val") is None


def load_train_val(
    data_spec: str,
    val_spec: str | None = None,
    *,
    subset: int | None = None,
    subset_seed: int = 0,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    test_seed: int = 0,
) -> tuple[EmbeddingSet, EmbeddingSet]:
    """Training set (optionally a nested subset) and held-out set with matching dimension.

    When the data is one file (:func:`needs_test_holdout`), ``test_fraction`` of its rows are
    held out first (seeded by ``test_seed``; :func:`holdout_test`) and never returned here: they
    are the reference of ``flowstudy evaluate``. Without a val spec and without a split beside the data,
    ``val_fraction`` of the remaining rows are held out at random (seeded by ``split_seed``) —
    before any subset is taken, so subsets never see held-out rows.
    """
    train = load_dataset(data_spec)
    if test_fraction > 0 and needs_test_holdout(data_spec, val_spec):
        train, _ = holdout_test(train, test_fraction, test_seed)
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


def load_config_splits(config) -> tuple[EmbeddingSet, EmbeddingSet]:
    """(train, val) of a :class:`~flowstudy.train.TrainConfig` (or its dict), as its run trains on them."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    return load_train_val(
        get("data"), get("val"), subset=get("subset"), subset_seed=get("subset_seed", 0), split_seed=get("seed", 0),
        test_fraction=get("test_fraction", 0.0), test_seed=get("test_seed", 0),
    )


def heldout_test_of(config: dict) -> tuple[EmbeddingSet, EmbeddingSet] | None:
    """(the rows a run may use, its held-out test rows) for a run config whose data is one file
    and that held some out (``test_fraction`` > 0); None otherwise."""
    fraction = config.get("test_fraction", 0.0) or 0.0
    if fraction <= 0 or not needs_test_holdout(config["data"], config.get("val")):
        return None
    return holdout_test(load_dataset(config["data"]), fraction, config.get("test_seed", 0))
