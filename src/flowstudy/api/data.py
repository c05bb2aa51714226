"""Data through the API: load any data-like value, inspect an embedding set, describe this install."""

from __future__ import annotations

from typing import Any

from flowstudy.data import EmbeddingSet
from flowstudy.datalike import DataLike, load_dataset

__all__ = ["DataLike", "EmbeddingSet", "inspect_dataset", "load_dataset", "split", "system_info"]


def split(data: DataLike, *, test: float = 0.1, seed: int = 0) -> tuple[EmbeddingSet, EmbeddingSet]:
    """(train, test) rows of ``data``: a seeded ``test`` fraction held out at random, file order kept.

    The same rows a run trained on ``data`` as one file holds out for evaluation (its config's
    ``test_fraction`` and ``test_seed``; :func:`flowstudy.data.resolve.holdout_test`), so
    ``fs.evaluate(run)`` and ``fs.evaluate(x, reference=fs.split(data)[1], train=...)`` compare
    with the same rows.
    """
    from flowstudy.data.resolve import holdout_test

    return holdout_test(load_dataset(data), test, seed)


def inspect_dataset(data: DataLike, *, texts: str | None = None) -> dict[str, Any]:
    """N, D, norms, per-dimension spread, near-constant dimensions, duplicates and non-finite rows
    of an embedding set (non-finite rows are reported, not refused). A JSON-serialisable dict."""
    from flowstudy.data.inspect import inspect_embeddings

    return inspect_embeddings(load_dataset(data, texts=texts, allow_nonfinite=True))


def system_info() -> dict[str, Any]:
    """Versions, devices, registered architectures, flows, solvers and compute backends."""
    from flowstudy.info import collect_info

    return collect_info()
