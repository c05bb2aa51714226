"""Schedule and EMA arithmetic against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flowstudy.train import EMA, ema_decay_at, lr_factor


def test_warmup_is_linear_and_relative_to_run_length():
    total = 100
    assert lr_factor(0, total, 0.1, 0.0) == pytest.approx(0.1)  # 10 warm-up steps
    assert lr_factor(4, total, 0.1, 0.0) == pytest.approx(0.5)
    assert lr_factor(9, total, 0.1, 0.0) == pytest.approx(1.0)
    # a run of 30 steps leaves warm-up after 3 steps, not after a fixed 1000
    assert lr_factor(3, 30, 0.1, 0.0) == pytest.approx(1.0)


def test_cosine_reaches_min_at_last_step():
    total, w, m = 100, 10, 0.05
    assert lr_factor(w, total, 0.1, m) == pytest.approx(1.0)
    mid = w + (total - 1 - w) / 2
    assert lr_factor(int(mid), total, 0.1, m) == pytest.approx(m + (1 - m) * 0.5 * (1 + math.cos(math.pi * (int(mid) - w) / (total - 1 - w))))
    assert lr_factor(total - 1, total, 0.1, m) == pytest.approx(m)
    factors = [lr_factor(s, total, 0.1, m) for s in range(w, total)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_ema_decay_warmup():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(10, 0.999) == pytest.approx(11 / 20)
    assert ema_decay_at(100_000, 0.999) == 0.999


def test_ema_matches_closed_form_recursion():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9)
    expected = 0.0
    for step in range(30):
        with torch.no_grad():
            model.weight.fill_(float(step + 1))
        d = ema.update(model)
        assert d == pytest.approx(min(0.9, (1 + step) / (10 + step)))
        expected = d * expected + (1 - d) * (step + 1)
    assert ema.model.weight.item() == pytest.approx(expected, rel=1e-6)
    # warm-up makes the EMA follow the weights: not stuck near the initial 0
    assert ema.model.weight.item() > 15
