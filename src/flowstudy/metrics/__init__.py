"""Honest evaluation: distribution metrics, baselines, path metrics, uncertainty.

Inputs are [N, D] arrays already in one space (standardised with training statistics);
distances are float64. Every evaluation reports the model beside a Gaussian fit, noise,
copies of training rows and real held-out data, computed by the same code on the same
held-out splits (:func:`evaluate_with_baselines`), says which metrics order those baselines
correctly on the data at hand (:func:`sanity_check`), and can add the flow's held-out NLL
beside the Gaussian fits' (:func:`heldout_nll`).
"""

from __future__ import annotations

from flowstudy.metrics.baselines import BASELINES, REFERENCE_ROW, baseline_samples
from flowstudy.metrics.c2st import C2STResult, c2st_auc
from flowstudy.metrics.evaluate import METRICS, Evaluator, evaluate_samples, evaluate_with_baselines
from flowstudy.metrics.frechet import FrechetResult, frechet_distance, frechet_from_moments
from flowstudy.metrics.likelihood import HeldoutNLL, NLLEstimate, gaussian_fit, gaussian_log_prob, heldout_nll, ode_log_prob
from flowstudy.metrics.mmd import MMDResult, median_heuristic, mmd_rbf
from flowstudy.metrics.moments import MomentErrors, moment_errors, norm_ratio
from flowstudy.metrics.neighbours import NeighbourRatios, NeighbourReference, neighbour_ratios
from flowstudy.metrics.paths import (
    NFECurve,
    Reconstruction,
    Straightness,
    error_vs_nfe,
    reconstruction_error,
    row_errors,
    straightness,
)
from flowstudy.metrics.prdc import DensityCoverage, density_coverage
from flowstudy.metrics.sanity import MetricSanity, sanity_check
from flowstudy.metrics.splits import HalfSplit, half_splits
from flowstudy.metrics.stats import MeanCI, PairedTest, bootstrap_ci, holm, mean_ci, paired_test
from flowstudy.metrics.table import EvaluationTable

__all__ = [
    "BASELINES",
    "METRICS",
    "REFERENCE_ROW",
    "C2STResult",
    "DensityCoverage",
    "EvaluationTable",
    "Evaluator",
    "FrechetResult",
    "HalfSplit",
    "HeldoutNLL",
    "MMDResult",
    "MeanCI",
    "MetricSanity",
    "MomentErrors",
    "NFECurve",
    "NLLEstimate",
    "NeighbourRatios",
    "NeighbourReference",
    "PairedTest",
    "Reconstruction",
    "Straightness",
    "baseline_samples",
    "bootstrap_ci",
    "c2st_auc",
    "density_coverage",
    "error_vs_nfe",
    "evaluate_samples",
    "evaluate_with_baselines",
    "frechet_distance",
    "frechet_from_moments",
    "gaussian_fit",
    "gaussian_log_prob",
    "half_splits",
    "heldout_nll",
    "holm",
    "mean_ci",
    "median_heuristic",
    "mmd_rbf",
    "moment_errors",
    "norm_ratio",
    "neighbour_ratios",
    "ode_log_prob",
    "paired_test",
    "reconstruction_error",
    "row_errors",
    "sanity_check",
    "straightness",
]
