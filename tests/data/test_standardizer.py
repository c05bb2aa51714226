"""Standardizer: exact float64 round trip, the std floor, persistence."""

from __future__ import annotations

import pytest
import torch

from flowstudy.data import Standardizer, load_dataset
from flowstudy.errors import DataError


def _data(n=200, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(d, generator=g, dtype=torch.float64) + 0.5
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + 3.0


def test_transform_is_zscore_and_inverse_is_exact_in_float64():
    x = _data()
    st = Standardizer.fit(x, floor_ratio=0.0 + 1e-9)
    z = st.transform(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(16, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(16, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.equal(st.inverse(z), x) or torch.allclose(st.inverse(z), x, rtol=1e-15, atol=1e-14)


def test_floor_handles_near_constant_dimensions():
    x = _data()
    x[:, 3] = 1.0 + 1e-7 * torch.randn(200, dtype=torch.float64)
    st = Standardizer.fit(x, floor_ratio=0.1)
    assert st.floored_dims.tolist() == [3]
    median = x.std(0).median()
    assert st.scale[3] == pytest.approx(0.1 * median.item())
    assert st.transform(x)[:, 3].abs().max() < 1e-4  # tiny, not blown up to O(1) or beyond
    torch.testing.assert_close(st.inverse(st.transform(x)), x, rtol=1e-14, atol=1e-14)


def test_sonar_near_constant_dimensions_are_floored():
    train = torch.from_numpy(load_dataset("builtin:sonar-gsm8k-1k").embeddings)
    st = Standardizer.fit(train)
    assert set(st.floored_dims.tolist()) == {837, 652}
    z = st.transform(train)
    assert z.abs().max() < 10
    assert z.norm(dim=1).mean() == pytest.approx(32, rel=0.05)


def test_dtype_preserved_and_shape_checked():
    st = Standardizer.fit(_data())
    x32 = _data(seed=1).float()
    assert st.transform(x32).dtype == torch.float32
    with pytest.raises(DataError, match=r"expected embeddings of shape \[N, 16\]; got \(4, 3\)"):
        st.transform(torch.zeros(4, 3))
    with pytest.raises(DataError, match="at least 2 rows"):
        Standardizer.fit(torch.zeros(1, 3))


def test_save_load_round_trip(tmp_path):
    x = _data()
    st = Standardizer.fit(x)
    st.save(tmp_path / "stats.pt")
    back = Standardizer.load(tmp_path / "stats.pt")
    assert torch.equal(back.transform(x), st.transform(x))
    assert back.floor_ratio == st.floor_ratio
