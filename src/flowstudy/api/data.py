"""Data through the API: load any data-like value, inspect an embedding set, describe this install."""

from __future__ import annotations

from typing import Any

from flowstudy.data import EmbeddingSet
from flowstudy.datalike import DataLike, load_dataset

__all__ = ["DataLike", "EmbeddingSet", "inspect_dataset", "load_dataset", "system_info"]


def inspect_dataset(data: DataLike, *, texts: str | None = None) -> dict[str, Any]:
    """N, D, norms, per-dimension spread, near-constant dimensions, duplicates and non-finite rows
    of an embedding set (non-finite rows are reported, not refused). A JSON-serialisable dict."""
    from flowstudy.data.inspect import inspect_embeddings

    return inspect_embeddings(load_dataset(data, texts=texts, allow_nonfinite=True))


def system_info() -> dict[str, Any]:
    """Versions, devices, registered architectures, flows, solvers and compute backends."""
    from flowstudy.info import collect_info

    return collect_info()
