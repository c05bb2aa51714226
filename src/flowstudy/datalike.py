"""What a user may hand over as data: a spec string, a path, an array or tensor [N, D], or an
:class:`~flowstudy.data.EmbeddingSet`, turned into one validated EmbeddingSet.

The Python API and a trained run (:mod:`flowstudy.run`) accept all of these wherever data is
asked for; the command line hands over spec strings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import numpy as np
import torch

from flowstudy.data import EmbeddingSet, read_texts
from flowstudy.data import load_dataset as load_spec
from flowstudy.data.validation import check_embeddings, check_texts
from flowstudy.errors import DataError
from flowstudy.io import atomic_save_npy, atomic_write_text

DataLike = Union[str, os.PathLike, np.ndarray, torch.Tensor, EmbeddingSet]
"""A dataset spec (``builtin:NAME[:SPLIT]``, ``PATH``, ``PATH:KEY``, ``DIR:SPLIT``), a path, an
array or tensor [N, D], or an :class:`~flowstudy.data.EmbeddingSet`."""

__all__ = ["DataLike", "as_spec", "load_dataset"]


def load_dataset(
    data: DataLike, *, texts: str | os.PathLike | list[str] | None = None, allow_nonfinite: bool = False
) -> EmbeddingSet:
    """An embedding set from a spec string, a path, an array/tensor [N, D] or an EmbeddingSet.

    Rows are validated (2-D, numeric, finite unless ``allow_nonfinite``) and returned as float32
    [N, D] in the units they were given in. ``texts``: a ``.jsonl``/``.txt`` path or a list of N
    strings. In-memory arrays get the source name ``"<array NxD>"`` (``"<tensor NxD>"``).
    """
    if isinstance(data, EmbeddingSet):
        return data if texts is None else _with_texts(data.embeddings, texts, data.source)
    if isinstance(data, (str, os.PathLike)):
        text_path = None if texts is None or isinstance(texts, list) else texts
        loaded = load_spec(str(data), texts=text_path, allow_nonfinite=allow_nonfinite)
        return loaded if not isinstance(texts, list) else _with_texts(loaded.embeddings, texts, loaded.source)
    if isinstance(data, torch.Tensor):
        array, kind = data.detach().cpu().numpy(), "tensor"
    elif isinstance(data, np.ndarray):
        array, kind = data, "array"
    else:
        raise DataError(f"data must be a spec string, a path, a numpy array, a torch tensor or an EmbeddingSet; got {type(data).__name__}")
    source = f"<{kind} {'x'.join(map(str, array.shape))}>"
    array = check_embeddings(array, source, allow_nonfinite=allow_nonfinite)
    return _with_texts(array, texts, source) if texts is not None else EmbeddingSet(array, None, source)


def _with_texts(array: np.ndarray, texts: str | os.PathLike | list[str], source: str) -> EmbeddingSet:
    text_list, text_source = (list(texts), f"texts of {source}") if isinstance(texts, list) else (read_texts(Path(texts)), str(texts))
    return EmbeddingSet(array, check_texts(text_list, array.shape[0], text_source, source), source)


def _reloads(data: EmbeddingSet) -> bool:
    """True when ``data.source`` is a spec that still loads to exactly these rows (and texts)."""
    try:
        again = load_spec(data.source)
    except (DataError, OSError):
        return False
    same_rows = again.embeddings.shape == data.embeddings.shape and np.array_equal(again.embeddings, data.embeddings)
    return same_rows and (data.texts is None or again.texts == data.texts)


def as_spec(data: DataLike, folder: Path, name: str) -> str:
    """A spec string for ``data``: itself, its source when that reloads, else ``folder/name.npy``.

    A training run records its data by spec (so that it can be resumed and evaluated from the
    command line): rows given in memory are written there atomically, with a ``.jsonl`` of their texts.
    """
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    data = load_dataset(data)
    if _reloads(data):
        return data.source
    path = Path(folder) / f"{name}.npy"
    atomic_save_npy(path, data.embeddings)
    if data.texts is not None:
        atomic_write_text(path.with_suffix(".jsonl"), "".join(json.dumps({"text": t}) + "\n" for t in data.texts))
    return str(path)
