"""Guided optimisation over a flow prior's embeddings: objectives, GP surrogate, guided sampler,
methods behind one ``propose`` interface, a resumable loop with ask/tell, and reports."""

from flowstudy.guidance.history import History, Proposal
from flowstudy.guidance.loop import LoopConfig, Optimisation
from flowstudy.guidance.objectives import Objective, parse_objective
from flowstudy.guidance.prior import Prior, load_prior
from flowstudy.guidance.sampler import GuidanceConfig, guided_sample

__all__ = [
    "GuidanceConfig",
    "History",
    "LoopConfig",
    "Objective",
    "Optimisation",
    "Prior",
    "Proposal",
    "guided_sample",
    "load_prior",
    "parse_objective",
]
