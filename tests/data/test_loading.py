"""Loaders for every format and every validation error, each message checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flowstudy.data import check_same_dim, load_dataset
from flowstudy.errors import DataError


@pytest.fixture
def rows() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)


def _write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"row": i, "text": t}) + "\n" for i, t in enumerate(texts)))


def test_npy_with_jsonl_sidecar_keeps_rows_and_order(tmp_path, rows):
    np.save(tmp_path / "e.npy", rows)
    _write_jsonl(tmp_path / "e.jsonl", [f"t{i}" for i in range(12)])
    data = load_dataset(str(tmp_path / "e.npy"))
    np.testing.assert_array_equal(data.embeddings, rows)
    assert data.texts == [f"t{i}" for i in range(12)]
    assert data.embeddings.dtype == np.float32


def test_npz_named_array_and_float64_input(tmp_path, rows):
    np.savez(tmp_path / "e.npz", train=rows.astype(np.float64), val=rows[:3])
    assert load_dataset(f"{tmp_path / 'e.npz'}:val").n == 3
    np.testing.assert_allclose(load_dataset(f"{tmp_path / 'e.npz'}:train").embeddings, rows)
    with pytest.raises(DataError, match="holds several arrays"):
        load_dataset(str(tmp_path / "e.npz"))
    with pytest.raises(DataError, match="no array named 'test'; available: train, val"):
        load_dataset(f"{tmp_path / 'e.npz'}:test")


def test_pt_tensor_and_dict_with_instructions(tmp_path, rows):
    torch.save(torch.from_numpy(rows), tmp_path / "t.pt")
    np.testing.assert_array_equal(load_dataset(str(tmp_path / "t.pt")).embeddings, rows)
    torch.save({"embeddings": torch.from_numpy(rows), "instructions": [f"i{k}" for k in range(12)]}, tmp_path / "d.pt")
    data = load_dataset(str(tmp_path / "d.pt"))
    assert data.texts[3] == "i3"
    np.testing.assert_array_equal(data.embeddings, rows)


def test_safetensors_and_txt_texts(tmp_path, rows):
    from safetensors.numpy import save_file

    save_file({"embeddings": rows}, str(tmp_path / "s.safetensors"))
    (tmp_path / "names.txt").write_text("\n".join(f"n{i}" for i in range(12)) + "\n")
    data = load_dataset(str(tmp_path / "s.safetensors"), texts=tmp_path / "names.txt")
    np.testing.assert_array_equal(data.embeddings, rows)
    assert data.texts[-1] == "n11"


def test_directory_split_spec(tmp_path, rows):
    np.save(tmp_path / "train.npy", rows)
    np.save(tmp_path / "val.npy", rows[:4])
    assert load_dataset(f"{tmp_path}:val").n == 4
    with pytest.raises(DataError, match="name a split"):
        load_dataset(str(tmp_path))


def test_builtin_dataset_is_the_real_sonar_set():
    train = load_dataset("builtin:sonar-gsm8k-1k")
    val = load_dataset("builtin:sonar-gsm8k-1k:val")
    test = load_dataset("builtin:sonar-gsm8k-1k:test")
    assert (train.n, train.dim, val.n, test.n, test.dim) == (800, 1024, 100, 400, 1024)
    assert len(train.texts) == 800 and len(val.texts) == 100 and len(test.texts) == 400
    assert test.embeddings.dtype == np.float32
    assert abs(np.linalg.norm(train.embeddings, axis=1).mean() - 0.204) < 0.005
    assert abs(np.linalg.norm(test.embeddings, axis=1).mean() - 0.204) < 0.005
    # held out: no test text in train or val, and no test row within cosine 0.95 of a training row
    assert not set(test.texts) & (set(train.texts) | set(val.texts))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    assert float((unit(test.embeddings) @ unit(train.embeddings).T).max()) < 0.95
    with pytest.raises(DataError, match="no split 'dev'; available: train, val, test"):
        load_dataset("builtin:sonar-gsm8k-1k:dev")
    with pytest.raises(DataError, match="unknown builtin dataset 'nope'; available: sonar-gsm8k-1k"):
        load_dataset("builtin:nope")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((3, 4, 2), np.float32), r"must be a 2-D array \[N, D\]; got shape \(3, 4, 2\)"),
        (np.zeros((0, 8), np.float32), r"empty \(shape \(0, 8\)\)"),
        (np.array([["a", "b"], ["c", "d"]]), "must be numeric; got dtype <U1"),
        (np.array([[True, False]]), "must be numeric; got dtype bool"),
    ],
)
def test_structural_errors_name_file_and_problem(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(str(path))
    assert str(path) in str(info.value)


def test_nonfinite_rows_are_named(tmp_path, rows):
    rows[2, 1] = np.nan
    rows[7, 0] = np.inf
    np.save(tmp_path / "nan.npy", rows)
    with pytest.raises(DataError, match=r"2 of 12 rows contain non-finite values \(NaN or inf\): rows 2, 7"):
        load_dataset(str(tmp_path / "nan.npy"))
    assert load_dataset(str(tmp_path / "nan.npy"), allow_nonfinite=True).n == 12


def test_text_count_mismatch(tmp_path, rows):
    np.save(tmp_path / "e.npy", rows)
    _write_jsonl(tmp_path / "e.jsonl", ["only", "two"])
    with pytest.raises(DataError, match=r"e\.jsonl.*2 texts for 12 embedding rows"):
        load_dataset(str(tmp_path / "e.npy"))


def test_jsonl_line_without_text_field_is_named(tmp_path, rows):
    np.save(tmp_path / "e.npy", rows)
    (tmp_path / "e.jsonl").write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(DataError, match=r"e\.jsonl, line 2: no string 'text' field"):
        load_dataset(str(tmp_path / "e.npy"))


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".safetensors"])
def test_truncated_files_are_reported(tmp_path, rows, suffix):
    path = tmp_path / f"full{suffix}"
    if suffix == ".npy":
        np.save(path, rows)
    elif suffix == ".npz":
        np.savez(path, embeddings=rows)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(rows), path)
    else:
        from safetensors.numpy import save_file

        save_file({"embeddings": rows}, str(path))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match="cannot read file") as info:
        load_dataset(str(cut))
    assert str(cut) in str(info.value)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "none.npy"))
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"unsupported file type '\.csv'"):
        load_dataset(str(tmp_path / "x.csv"))


def test_dimension_mismatch_names_both_sets():
    with pytest.raises(DataError, match="train.npy has D=1024, val.npy has D=384"):
        check_same_dim({"train.npy": 1024, "val.npy": 384})
    assert check_same_dim({"a": 5, "b": 5}) == 5
