"""Many sample sets evaluated against one (training, held-out) pair: the shared rows once, on the device.

:func:`~flowstudy.metrics.evaluate.evaluate_with_baselines` evaluates a model's samples beside four
rows that do not depend on them: the Gaussian fit, noise, copies and the real held-out half. In a
study every cell of one data set, sample count and ``eval_seed`` repeats those four rows exactly, and
they are four fifths of the evaluation's work. :class:`SharedEvaluation` computes them once and then
evaluates only each sample set's own row, with the same :class:`~flowstudy.metrics.evaluate.Evaluator`
(same splits, subsamples, folds and kernels), so a table equals the one ``evaluate_with_baselines``
returns for the same samples up to floating-point rounding.

The torch metrics (nearest neighbours, density/coverage, MMD, Fréchet distance, moments) run where
the data are: give CUDA tensors and their distance matrices and top-k searches run on the GPU. The
classifier tests stay scikit-learn on the CPU.

:func:`shared_evaluation` keeps the evaluations of one process in a small cache keyed by the data's
content and the settings, so that the groups of a study run in threads share the baseline rows.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from flowstudy.metrics.distances import as_matrices
from flowstudy.metrics.evaluate import METRICS, Evaluator, baseline_split_values, evaluation_table
from flowstudy.metrics.table import EvaluationTable

CACHE_SIZE = 4
"""Shared evaluations kept per process (a study has one per data set and sample count)."""


class SharedEvaluation:
    """The evaluation protocol of :func:`evaluate_with_baselines` for many sample sets of ``n_samples`` rows.

    train: [Nt, D]; heldout: [Nh, D] (same space; on the device the torch metrics should use).
    The baseline and held-out rows are computed at construction; :meth:`table` adds a sample set's row.
    """

    def __init__(
        self,
        train: np.ndarray | Tensor,
        heldout: np.ndarray | Tensor,
        n_samples: int,
        *,
        seed: int = 0,
        n_splits: int = 20,
        n_dist_splits: int = 5,
        metrics: Sequence[str] = METRICS,
        baselines: Sequence[str] | None = None,
    ) -> None:
        train, heldout = as_matrices(train=train, heldout=heldout)
        self.n_samples, self.seed = int(n_samples), seed
        self.evaluator = Evaluator(
            train, heldout, seed=seed, n_splits=n_splits, n_dist_splits=n_dist_splits,
            n_eval=min(self.n_samples, heldout.shape[0] // 2), metrics=metrics,
        )
        self.shared_rows = baseline_split_values(self.evaluator, self.n_samples, seed, baselines)  # row -> metric -> [splits]

    def table(self, samples: np.ndarray | Tensor) -> EvaluationTable:
        """The evaluation table of ``samples`` [n_samples, D] (model row beside the shared rows)."""
        (s,) = as_matrices(samples=samples)
        if s.shape[0] != self.n_samples:
            raise ValueError(f"samples must have {self.n_samples} rows (the baselines' count); got {s.shape[0]}")
        per_split = {"model": self.evaluator.split_values(s), **self.shared_rows}
        return evaluation_table(self.evaluator, per_split, n_samples=self.n_samples, seed=self.seed)


_cache: OrderedDict[tuple, SharedEvaluation] = OrderedDict()
_cache_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}


def content_key(x: Tensor) -> str:
    """A digest of a tensor's shape, dtype and values (equal digests: equal tensors)."""
    data = x.detach().contiguous().cpu()
    digest = hashlib.sha1(f"{tuple(data.shape)}{data.dtype}".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def shared_evaluation(
    train: Tensor, heldout: Tensor, n_samples: int, *, seed: int, n_splits: int, n_dist_splits: int
) -> SharedEvaluation:
    """A :class:`SharedEvaluation` for these data and settings, built once per process (thread-safe:
    a second thread asking for the same one waits for the first)."""
    key = (content_key(train), content_key(heldout), str(train.device), int(n_samples), seed, n_splits, n_dist_splits)
    with _cache_lock:
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
        shared = SharedEvaluation(train, heldout, n_samples, seed=seed, n_splits=n_splits, n_dist_splits=n_dist_splits)
        with _cache_lock:
            _cache[key] = shared
            while len(_cache) > CACHE_SIZE:
                _key_locks.pop(next(iter(_cache)), None)
                _cache.popitem(last=False)
        return shared


__all__ = ["CACHE_SIZE", "SharedEvaluation", "content_key", "shared_evaluation"]
