"""First and second moment checks: row norms, per-dimension means and standard deviations.

Cheap and blunt, but they catch the gross failures (samples at the noise's scale, a
standardised/raw space mix-up, collapsed variance) at a glance. They work on whatever
arrays they get: the caller chooses the space (the norm ratio is most telling in the
original space, where embeddings have a characteristic norm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor

from flowstudy.metrics.distances import as_matrices, require_rows

STD_FLOOR = 1e-12


@dataclass(frozen=True)
class MomentErrors:
    """norm_ratio = mean_i ||s_i|| / mean_i ||r_i|| (1 ideal);
    mean_error = sqrt(mean_d (m_s[d] - m_r[d])^2) (0 ideal);
    std_error = sqrt(mean_d ((sd_s[d] - sd_r[d]) / sd_r[d])^2) (0 ideal, relative)."""

    norm_ratio: float
    mean_error: float
    std_error: float


def norm_ratio(samples: np.ndarray | Tensor, real: np.ndarray | Tensor) -> float:
    """mean_i ||s_i|| / mean_i ||r_i|| of ``samples`` [Ns, D] against ``real`` [Nr, D] (float64)."""
    s, r = as_matrices(samples=samples, real=real)
    return float(s.norm(dim=1).mean() / r.norm(dim=1).mean())


def moment_errors(samples: np.ndarray | Tensor, real: np.ndarray | Tensor) -> MomentErrors:
    """Moment errors of ``samples`` [Ns, D] against ``real`` [Nr, D] (>= 2 rows each)."""
    s, r = as_matrices(samples=samples, real=real)
    require_rows(s, 2, "samples")
    require_rows(r, 2, "real")
    ratio = norm_ratio(s, r)
    mean_error = ((s.mean(0) - r.mean(0)) ** 2).mean().sqrt()
    sd_r = r.std(0).clamp_min(STD_FLOOR)  # [D]; a constant real dimension would divide by 0
    std_error = (((s.std(0) - sd_r) / sd_r) ** 2).mean().sqrt()
    return MomentErrors(ratio, float(mean_error), float(std_error))
