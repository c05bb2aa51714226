"""Fréchet distance between Gaussian fits, with its sample-size bias stated.

Dowson & Landau 1982; the FID of Heusel et al. 2017 on other features:

    FD = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})

The trace of the matrix square root is computed without a non-symmetric sqrtm, in float64:

- from moments: tr((S_a S_b)^{1/2}) = sum_i sqrt(lambda_i(S_a^{1/2} S_b S_a^{1/2})), a
  symmetric PSD eigenproblem, round-off eigenvalues clipped to 0;
- from samples with min(n_a, n_b) <= D: with centred rows X_a [n_a, D], X_b [n_b, D],
  S_a S_b has the non-zero eigenvalues of (X_a X_b^T)(X_a X_b^T)^T / ((n_a - 1)(n_b - 1)), so
  tr((S_a S_b)^{1/2}) = ||X_a X_b^T||_* / sqrt((n_a - 1)(n_b - 1)) (nuclear norm): an
  [n_a, n_b] SVD instead of two [D, D] eigendecompositions, and no square roots of round-off.

FD from samples is biased upward (Chong & Forsyth, "Effectively Unbiased FID and
Inception Score", CVPR 2020): the mean term alone has expectation tr(S_a)/n_a + tr(S_b)/n_b
above the true value, and with D = 1024 and N ~ 100 the covariance fits have rank < N and
the trace term is dominated by estimation error. Compare FDs only at equal (n_a, n_b),
for instance against the held-out reference row computed at the same N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flowstudy.errors import DataError
from flowstudy.metrics.distances import as_matrices, require_rows

BIAS_NOTE = (
    "Frechet distance between Gaussian fits is biased upward at finite sample size; in high "
    "dimension with few rows (e.g. D=1024, N~100) it is dominated by covariance estimation "
    "error. Compare values only at equal n_a and n_b."
)


@dataclass(frozen=True)
class FrechetResult:
    """FD of two sample sets, its two terms, the sizes it was computed at and its caveat.

    ``mean_term_bias`` = tr(S_a)/n_a + tr(S_b)/n_b, the expected upward bias of the mean term.
    """

    value: float
    mean_term: float
    trace_term: float
    mean_term_bias: float
    n_a: int
    n_b: int
    dim: int
    note: str = BIAS_NOTE


def _psd_sqrt(cov: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD [D, D] matrix (negative eigenvalues clipped)."""
    evals, evecs = torch.linalg.eigh(cov)
    return (evecs * evals.clamp_min(0.0).sqrt()[None, :]) @ evecs.T


def trace_sqrt_product(cov_a: Tensor, cov_b: Tensor) -> float:
    """tr((S_a S_b)^{1/2}) for symmetric PSD [D, D] matrices, in float64.

    Eigenvalues below D * eps * max|lambda| (the numerical rank threshold) count as 0: the
    square root would turn their round-off (~1e-15) into ~1e-7 each, which adds up when a
    covariance fitted from N < D rows has D - N + 1 zero eigenvalues.
    """
    root_a = _psd_sqrt(cov_a)
    inner = root_a @ cov_b @ root_a
    evals = torch.linalg.eigvalsh(0.5 * (inner + inner.T))  # symmetrise round-off
    tol = evals.shape[0] * torch.finfo(evals.dtype).eps * evals.abs().max()
    return float(torch.where(evals > tol, evals, 0.0).sqrt().sum())


def frechet_from_moments(
    mu_a: np.ndarray | Tensor, cov_a: np.ndarray | Tensor, mu_b: np.ndarray | Tensor, cov_b: np.ndarray | Tensor
) -> float:
    """Exact FD between N(mu_a [D], cov_a [D, D]) and N(mu_b, cov_b), in float64."""
    ma, ca, mb, cb = (torch.as_tensor(v, dtype=torch.float64).cpu() for v in (mu_a, cov_a, mu_b, cov_b))
    d = ma.shape[0]
    if ma.shape != (d,) or mb.shape != (d,) or ca.shape != (d, d) or cb.shape != (d, d):
        raise DataError(
            f"means must be [D] and covariances [D, D]; got {tuple(ma.shape)}, {tuple(ca.shape)}, "
            f"{tuple(mb.shape)}, {tuple(cb.shape)}"
        )
    mean_term = float(((ma - mb) ** 2).sum())
    return mean_term + float(torch.trace(ca) + torch.trace(cb)) - 2.0 * trace_sqrt_product(ca, cb)


def _trace_sqrt_from_rows(xa: Tensor, xb: Tensor) -> float:
    """tr((S_a S_b)^{1/2}) = ||X_a X_b^T||_* / sqrt((n_a - 1)(n_b - 1)) for centred rows."""
    cross = xa @ xb.T  # [n_a, n_b]
    return float(torch.linalg.svdvals(cross).sum()) / float(np.sqrt((xa.shape[0] - 1) * (xb.shape[0] - 1)))


def frechet_distance(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> FrechetResult:
    """FD between Gaussian fits of ``a`` [n_a, D] and ``b`` [n_b, D] (n >= 2 each), float64.

    Covariances are unbiased (1/(n - 1)). Uses the sample-space formula when
    min(n_a, n_b) <= D, else the covariance eigenproblem (module docstring).
    """
    xa, xb = (m.cpu() for m in as_matrices(a=a, b=b))
    require_rows(xa, 2, "a")
    require_rows(xb, 2, "b")
    (na, dim), nb = xa.shape, xb.shape[0]
    mu_a, mu_b = xa.mean(0), xb.mean(0)
    ca, cb = xa - mu_a, xb - mu_b  # [n_a, D], [n_b, D] centred
    tr_a, tr_b = float((ca**2).sum()) / (na - 1), float((cb**2).sum()) / (nb - 1)
    if min(na, nb) <= dim:
        cross = _trace_sqrt_from_rows(ca, cb)
    else:
        cross = trace_sqrt_product(ca.T @ ca / (na - 1), cb.T @ cb / (nb - 1))
    mean_term = float(((mu_a - mu_b) ** 2).sum())
    trace_term = tr_a + tr_b - 2.0 * cross
    return FrechetResult(
        value=mean_term + trace_term,
        mean_term=mean_term,
        trace_term=trace_term,
        mean_term_bias=tr_a / na + tr_b / nb,
        n_a=na,
        n_b=nb,
        dim=dim,
    )
