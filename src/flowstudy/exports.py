"""The names of the Python API: what ``import flowstudy`` offers (on first use, without importing
torch) and what :mod:`flowstudy.api` defines. A low module, so that both read one list."""

from __future__ import annotations

__all__ = ["API_NAMES"]

API_NAMES = (
    "AskTell",
    "Candidates",
    "Comparison",
    "DataLike",
    "EmbeddingSet",
    "Evaluation",
    "NLLOptions",
    "NearestText",
    "OptimizationResult",
    "ReconstructionReport",
    "Run",
    "Samples",
    "Study",
    "TrainOption",
    "ask_tell",
    "evaluate",
    "fit",
    "inspect_dataset",
    "load_dataset",
    "load_run",
    "optimization_report",
    "optimize",
    "reconstruct",
    "report",
    "run_study",
    "sample",
    "split",
    "study_status",
    "system_info",
    "train_options",
)
"""What ``flowstudy`` re-exports (on first use) from :mod:`flowstudy.api`, whose ``__all__`` it is."""
