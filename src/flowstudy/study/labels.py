"""Short labels for a study's configurations, in words, for tables and figures.

A group's label in the results is its raw axis values ("aug=["noise:0.3"]/none/lr=0.0005/...").
Readers need less: only the axes that vary in the study, and of those only the values that differ
from the *common configuration* (each axis's most frequent value among the groups), where that
value is held by most groups (an axis of a balanced grid is always named). The common
configuration itself is labelled with all its varying values. Axis names become words
(``model.time_cond`` -> "time"), lists of augmentations read "noise 0.3".

    short_labels(groups)  # {"mamba/add/none": "mamba · time add · base none", "mamba/add/none/lr=0.002": "lr 0.002", ...}
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Sequence

AXIS_WORDS = {
    "arch": "",
    "flow": "",
    "model.mixer": "",
    "model.time_cond": "time",
    "model.chunk_size": "chunk",
    "model.directions": "directions",
    "model.hidden": "hidden",
    "model.d_model": "width",
    "base_field": "base",
    "residual_rank": "rank",
    "weight_decay": "weight decay",
    "aug": "aug",
    "lr": "lr",
    "steps": "steps",
    "subset": "rows",
    "sample_steps": "steps",
    "sample_solver": "",
}
"""Axis -> the word put before its value ("" shows the value alone, for self-explaining values)."""
BARE_WORDS = ("none", "default", "on", "off", "full")
"""Values that say nothing alone: shown with their axis name even where its word is ""."""
SEPARATOR = " · "


def axis_word(axis: str) -> str:
    """The word for ``axis``: :data:`AXIS_WORDS`, else its last dotted part with spaces."""
    if axis in AXIS_WORDS:
        return AXIS_WORDS[axis]
    return axis.rsplit(".", 1)[-1].replace("_", " ")


def value_text(value: Any) -> str:
    """An axis value in words: None "default", ["noise:0.3"] "noise 0.3", [] "none", 0.0005 "0.0005"."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " + ".join(value_text(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value).replace(":", " ")


def part(axis: str, value: Any) -> str:
    """"lr 0.002", "mamba", "base none": one axis value after its word (none for self-explaining
    values such as an architecture's name)."""
    text = value_text(value)
    word = axis_word(axis)
    if not word and text.lower() in BARE_WORDS:
        word = axis.rsplit(".", 1)[-1].replace("_", " ")
    return f"{word} {text}" if word else text


def varying_axes(values: Sequence[dict[str, Any]]) -> list[str]:
    """Axes that take more than one value among ``values`` (one dict per group), in first-seen order."""
    names = list(dict.fromkeys(name for v in values for name in v))
    return [n for n in names if len({_key(v.get(n)) for v in values}) > 1]


def common_values(values: Sequence[dict[str, Any]], axes: Sequence[str]) -> dict[str, Any]:
    """Each axis's most frequent value among the groups (first seen on ties)."""
    out = {}
    for axis in axes:
        counts = Counter(_key(v.get(axis)) for v in values)
        top = max(counts.values())
        out[axis] = next(v.get(axis) for v in values if counts[_key(v.get(axis))] == top)
    return out


def short_labels(groups: Sequence[Any]) -> dict[str, str]:
    """group label -> short label (see the module docstring); unique: a clash falls back to every
    varying value, then to the raw label."""
    values = [g.values for g in groups]
    axes = varying_axes(values)
    if not axes:
        return {g.label: g.label for g in groups}
    common = common_values(values, axes)
    majority = {a for a in axes if 2 * sum(_key(v.get(a)) == _key(common[a]) for v in values) > len(values)}
    out = {}
    for g in groups:
        differs = [a for a in axes if a not in majority or _key(g.values.get(a)) != _key(common[a])]
        differs = [a for a in differs if g.values.get(a) is not None]  # unset: the axis does not apply
        shown = differs or [a for a in axes if g.values.get(a) is not None] or axes
        out[g.label] = SEPARATOR.join(part(a, g.values.get(a)) for a in shown)
    if len(set(out.values())) < len(out):
        out = {g.label: SEPARATOR.join(part(a, g.values.get(a)) for a in axes) for g in groups}
    if len(set(out.values())) < len(out):
        out = {g.label: g.label for g in groups}
    return out


def common_label(groups: Sequence[Any]) -> str:
    """The common configuration in words ("mamba · time add · base none"); "" when nothing varies."""
    values = [g.values for g in groups]
    axes = varying_axes(values)
    common = common_values(values, axes)
    return SEPARATOR.join(part(a, common[a]) for a in axes if common[a] is not None)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


__all__ = ["AXIS_WORDS", "axis_word", "common_label", "common_values", "part", "short_labels", "value_text", "varying_axes"]
