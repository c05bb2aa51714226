"""On CUDA, the chunked distance metrics agree with the CPU path."""

from __future__ import annotations

import pytest
import torch

from flowstudy.metrics import density_coverage, evaluate_samples, mmd_rbf, neighbour_ratios


@pytest.mark.gpu
def test_cuda_inputs_give_the_cpu_results():
    g = torch.Generator().manual_seed(0)
    train, held, samples = (torch.randn(n, 64, generator=g, dtype=torch.float64) for n in (500, 120, 200))
    cpu = neighbour_ratios(samples, train, held, n_splits=5)
    gpu = neighbour_ratios(samples.cuda(), train.cuda(), held.cuda(), n_splits=5)
    assert gpu.fidelity == pytest.approx(cpu.fidelity, rel=1e-10) and gpu.novelty == pytest.approx(cpu.novelty, rel=1e-10)
    assert mmd_rbf(samples.cuda(), held.cuda()).total == pytest.approx(mmd_rbf(samples, held).total, rel=1e-8, abs=1e-12)
    assert density_coverage(samples.cuda(), held.cuda()) == density_coverage(samples, held)
    a = evaluate_samples(samples, train, held, n_splits=3, n_dist_splits=1)
    b = evaluate_samples(samples.cuda(), train.cuda(), held.cuda(), n_splits=3, n_dist_splits=1)
    assert b == pytest.approx(a, rel=1e-6, abs=1e-9)
