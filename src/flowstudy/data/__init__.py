"""Loading, validation, standardisation, splits and augmentation of embedding sets."""

from flowstudy.data.augment import (
    AUGMENTATIONS,
    apply_augmentations,
    dim_dropout,
    gaussian_noise,
    mixup,
    parse_augmentations,
)
from flowstudy.data.builtin import BUILTIN_DATASETS
from flowstudy.data.loading import EmbeddingSet, load_dataset, read_texts
from flowstudy.data.splits import nested_subsets, split_indices
from flowstudy.data.standardizer import Standardizer
from flowstudy.data.validation import check_same_dim

__all__ = [
    "AUGMENTATIONS",
    "BUILTIN_DATASETS",
    "EmbeddingSet",
    "Standardizer",
    "apply_augmentations",
    "check_same_dim",
    "dim_dropout",
    "gaussian_noise",
    "load_dataset",
    "mixup",
    "nested_subsets",
    "parse_augmentations",
    "read_texts",
    "split_indices",
]
