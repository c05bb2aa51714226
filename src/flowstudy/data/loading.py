"""Read embedding sets from disk or the builtin registry.

A dataset *spec* is one of
    ``builtin:NAME`` / ``builtin:NAME:SPLIT``   a dataset shipped with the package (default split: train)
    ``zoo:NAME`` / ``zoo:NAME:SPLIT``           a generated synthetic set (:mod:`flowstudy.data.zoo`)
    ``PATH``                                    an .npy/.npz/.pt/.safetensors file
    ``PATH:KEY``                                a named array inside an .npz/.pt/.safetensors file
    ``DIR:SPLIT``                               ``DIR/SPLIT.{npy,npz,pt,safetensors}`` (+ ``DIR/SPLIT.jsonl`` texts)
Texts come from a sidecar file with the same stem (``.jsonl`` with a ``text`` field or
``.txt``, one per line), from the ``texts``/``instructions`` entry of a ``.pt`` dict, or
from an explicit ``texts=`` path.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowstudy.data import builtin, zoo
from flowstudy.data.validation import check_embeddings, check_texts
from flowstudy.errors import DataError

EMBEDDING_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors")
_TEXT_KEYS = ("texts", "instructions")
_ARRAY_KEYS = ("embeddings", "X", "x", "data")


@dataclass(frozen=True, repr=False)
class EmbeddingSet:
    """An embedding matrix with optional texts. embeddings: float32 [N, D]."""

    embeddings: np.ndarray
    texts: list[str] | None
    source: str

    def __repr__(self) -> str:
        """A summary (source, N, D, whether there are texts and the first one), never all the rows or texts."""
        texts = "no texts" if self.texts is None else f"texts, e.g. {self.texts[0][:60]!r}" if self.texts else "0 texts"
        return f"EmbeddingSet({self.source!r}: {self.n} rows x {self.dim} dims, {texts})"

    @property
    def n(self) -> int:
        """Number of rows N."""
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return int(self.embeddings.shape[1])

    def subset(self, indices: np.ndarray, label: str) -> EmbeddingSet:
        """Rows ``indices`` (order kept as given) as a new set."""
        texts = [self.texts[i] for i in indices] if self.texts is not None else None
        return EmbeddingSet(self.embeddings[indices], texts, f"{self.source}[{label}]")


def load_dataset(spec: str, *, texts: str | Path | None = None, allow_nonfinite: bool = False) -> EmbeddingSet:
    """Load and validate the embedding set named by ``spec`` (see module docstring)."""
    if spec.startswith("builtin:"):
        array, text_list, source = builtin.load(spec[len("builtin:") :])
        text_source = f"texts of {source}"
    elif spec.startswith("zoo:"):
        array, text_list, source = zoo.load(spec[len("zoo:") :])
        text_source = source
    else:
        path, key = _split_spec(spec)
        array, text_list, source, text_source = _load_path(path, key)
    array = check_embeddings(array, source, allow_nonfinite=allow_nonfinite)
    if texts is not None:
        text_list, text_source = read_texts(Path(texts)), str(texts)
    if text_list is not None:
        text_list = check_texts(text_list, array.shape[0], text_source, source)
    return EmbeddingSet(array, text_list, source)


def _split_spec(spec: str) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:KEY``; a path that exists as written wins over the split reading."""
    if Path(spec).exists() or ":" not in spec:
        return Path(spec), None
    head, key = spec.rsplit(":", 1)
    return Path(head), key


def _load_path(path: Path, key: str | None) -> tuple[object, list[str] | None, str, str]:
    """-> (array, texts or None, source label, where the texts came from)."""
    if path.is_dir():
        if key is None:
            raise DataError(f"{path}: is a directory; name a split as {path}:SPLIT (e.g. {path}:train)")
        for suffix in EMBEDDING_SUFFIXES:
            candidate = path / f"{key}{suffix}"
            if candidate.exists():
                return _load_path(candidate, None)
        raise DataError(f"{path}: no file for split '{key}' (looked for {key}{{{','.join(EMBEDDING_SUFFIXES)}}})")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    readers = {".npy": _read_npy, ".npz": _read_npz, ".pt": _read_pt, ".pth": _read_pt, ".safetensors": _read_safetensors}
    if suffix not in readers:
        raise DataError(f"{path}: unsupported file type '{suffix}'; expected one of {', '.join(EMBEDDING_SUFFIXES)}")
    source = f"{path}:{key}" if key else str(path)
    array, texts = readers[suffix](path, key)
    text_source = f"texts of {source}"
    if texts is None:
        sidecar = _sidecar(path)
        if sidecar is not None:
            texts, text_source = read_texts(sidecar), str(sidecar)
    return array, texts, source, text_source


def _unreadable(path: Path, err: Exception) -> DataError:
    return DataError(f"{path}: cannot read file (truncated or corrupt?): {type(err).__name__}: {err}")


def _read_npy(path: Path, key: str | None) -> tuple[object, None]:
    if key is not None:
        raise DataError(f"{path}: an .npy file holds one array; drop ':{key}'")
    try:
        return np.load(path, allow_pickle=False), None
    except Exception as err:  # numpy raises ValueError/EOFError/OSError for damaged files
        raise _unreadable(path, err) from err


def _pick(path: Path, names: list[str], key: str | None) -> str:
    if key is not None:
        if key not in names:
            raise DataError(f"{path}: no array named '{key}'; available: {', '.join(sorted(names))}")
        return key
    for preferred in _ARRAY_KEYS:
        if preferred in names:
            return preferred
    if len(names) == 1:
        return names[0]
    raise DataError(f"{path}: holds several arrays ({', '.join(sorted(names))}); choose one as {path}:NAME")


def _read_npz(path: Path, key: str | None) -> tuple[object, None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return archive[_pick(path, list(archive.files), key)], None
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise _unreadable(path, err) from err


def _read_pt(path: Path, key: str | None) -> tuple[object, list[str] | None]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError/EOFError/UnpicklingError on damage
        raise _unreadable(path, err) from err
    texts = None
    if isinstance(obj, dict):
        texts = next((list(obj[k]) for k in _TEXT_KEYS if k in obj and key is None), None)
        arrays = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
        if not arrays:
            raise DataError(f"{path}: dict holds no tensor; expected an 'embeddings' tensor")
        obj = obj[_pick(path, arrays, key)]
    elif key is not None:
        raise DataError(f"{path}: holds a single tensor; drop ':{key}'")
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"{path}: expected a tensor or a dict with 'embeddings'; got {type(obj).__name__}")
    if obj.is_floating_point() and obj.dtype != torch.float64:
        obj = obj.float()
    return obj.numpy(), texts


def _read_safetensors(path: Path, key: str | None) -> tuple[object, None]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise _unreadable(path, err) from err
    return tensors[_pick(path, list(tensors), key)], None


def _sidecar(path: Path) -> Path | None:
    """The texts file beside an embedding file: same stem, .jsonl or .txt."""
    for suffix in (".jsonl", ".txt"):
        candidate = path.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def read_texts(path: Path) -> list[str]:
    """Texts from ``.jsonl`` (a ``text`` field per line) or ``.txt`` (one per line)."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix.lower() != ".jsonl":
        return lines
    texts = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {number}: not valid JSON ({err.msg})") from err
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{path}, line {number}: no string 'text' field")
        texts.append(record["text"])
    return texts
