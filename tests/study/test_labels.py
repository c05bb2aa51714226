"""Short labels: only the axes that vary, in words, what differs from the common configuration."""

from __future__ import annotations

from types import SimpleNamespace

from flowstudy.study.labels import common_label, short_labels, value_text


def _groups(values: list[dict]) -> list:
    return [SimpleNamespace(label="/".join(f"{k}={v}" for k, v in d.items()), values=d) for d in values]


def test_labels_name_what_differs_from_the_common_configuration():
    groups = _groups([
        {"model.mixer": "mamba", "base_field": "none", "lr": 5e-4, "aug": None, "data": "x"},
        {"model.mixer": "attention", "base_field": "none", "lr": 5e-4, "aug": None, "data": "x"},
        {"model.mixer": "mamba", "base_field": "gaussian", "lr": 5e-4, "aug": None, "data": "x"},
        {"model.mixer": "mamba", "base_field": "none", "lr": 2e-3, "aug": None, "data": "x"},
        {"model.mixer": "mamba", "base_field": "none", "lr": 5e-4, "aug": ["noise:0.5"], "data": "x"},
    ])
    labels = list(short_labels(groups).values())
    # the common configuration in full (its unset axes left out); the others by what differs; "data" never varies
    assert labels == ["mamba · base none · lr 0.0005", "attention", "base gaussian", "lr 0.002", "aug noise 0.5"]
    assert common_label(groups) == "mamba · base none · lr 0.0005"
    assert max(map(len, labels)) <= 40


def test_labels_stay_unique():
    groups = _groups([{"arch": "mlp", "flow": "icfm"}, {"arch": "dit", "flow": "icfm"}, {"arch": "mlp", "flow": "otcfm"},
                      {"arch": "dit", "flow": "otcfm"}])
    labels = short_labels(groups)
    assert len(set(labels.values())) == 4 and labels[groups[3].label] == "dit · otcfm"


def test_values_in_words():
    assert [value_text(v) for v in (None, ["noise:0.3"], [], 0.0005, True, 64)] == ["default", "noise 0.3", "none", "0.0005", "on", "64"]
