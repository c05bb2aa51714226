"""Checks on embedding arrays and texts; every message names the source and the rows.

Nothing here drops, reorders or alters rows: a check either passes the array through
unchanged or raises :class:`~flowstudy.errors.DataError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flowstudy.errors import DataError

_MAX_LISTED = 10


def format_rows(rows: Sequence[int]) -> str:
    """'rows 3, 17 and 40' style list, truncated after a few entries."""
    rows = [int(r) for r in rows]
    shown = ", ".join(str(r) for r in rows[:_MAX_LISTED])
    more = f" (and {len(rows) - _MAX_LISTED} more)" if len(rows) > _MAX_LISTED else ""
    return f"row{'s' if len(rows) != 1 else ''} {shown}{more}"


def nonfinite_rows(array: np.ndarray) -> np.ndarray:
    """Indices of rows holding NaN or ±inf. array: [N, D]."""
    return np.flatnonzero(~np.isfinite(array).all(axis=1))


def check_embeddings(array: np.ndarray, source: str, *, allow_nonfinite: bool = False) -> np.ndarray:
    """Validate an embedding matrix [N, D] read from ``source`` and return it as float32.

    Raises DataError when it is not numeric, not 2-D, empty, or (unless
    ``allow_nonfinite``) holds NaN/inf values — naming the offending rows.
    """
    if not isinstance(array, np.ndarray):
        raise DataError(f"{source}: embeddings must be an array; got {type(array).__name__}")
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise DataError(f"{source}: embeddings must be numeric; got dtype {array.dtype}")
    if array.ndim != 2:
        raise DataError(f"{source}: embeddings must be a 2-D array [N, D]; got shape {tuple(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{source}: embedding set is empty (shape {tuple(array.shape)})")
    if not allow_nonfinite:
        bad = nonfinite_rows(array)
        if bad.size:
            raise DataError(
                f"{source}: {bad.size} of {array.shape[0]} rows contain non-finite values "
                f"(NaN or inf): {format_rows(bad)}"
            )
    return np.ascontiguousarray(array, dtype=np.float32)


def check_texts(texts: Sequence[str], n_rows: int, text_source: str, source: str) -> list[str]:
    """Texts must pair one-to-one with embedding rows."""
    texts = list(texts)
    if len(texts) != n_rows:
        raise DataError(
            f"{text_source}: {len(texts)} texts for {n_rows} embedding rows in {source}; "
            "texts must match rows one to one"
        )
    return texts


def check_same_dim(dims: dict[str, int]) -> int:
    """All named sets must share one dimension D; returns it."""
    distinct = sorted(set(dims.values()))
    if len(distinct) > 1:
        detail = ", ".join(f"{name} has D={d}" for name, d in dims.items())
        raise DataError(f"dimension mismatch between embedding sets: {detail}")
    return distinct[0]
