"""Flow methods: a path, a coupling and a time sampler composed into a training objective.

    from flowstudy.flows import create_flow
    flow = create_flow("otcfm")                      # or icfm, otcfm-sinkhorn, si-linear, si-trig, reflow
    loss = flow.loss(model, x1, generator=gen)       # model(x_t: [B, D], t: [B]) -> [B, D]

Parts live one per file: ``paths`` (interpolants x_t, u_t), ``couplings`` (pairing noise with
data), ``time_samplers``, ``method`` (their composition), ``registry`` (named recipes) and
``reflow`` (ODE pairs for rectified flow).
"""

from __future__ import annotations

from flowstudy.flows.couplings import COUPLINGS, Coupling, ExactOT, Independent, Paired, SinkhornOT
from flowstudy.flows.method import FlowMethod
from flowstudy.flows.path_sample import PathSample
from flowstudy.flows.paths import (
    PATHS,
    InterpolantPath,
    LinearInterpolant,
    PathCoefficients,
    Straight,
    TrigInterpolant,
)
from flowstudy.flows.reflow import generate_reflow_pairs
from flowstudy.flows.registry import FLOWS, FlowRecipe, create_flow, list_flows
from flowstudy.flows.time_samplers import TIME_SAMPLERS, LogitNormalTime, TimeSampler, UniformTime

__all__ = [
    "COUPLINGS",
    "FLOWS",
    "PATHS",
    "TIME_SAMPLERS",
    "Coupling",
    "ExactOT",
    "FlowMethod",
    "FlowRecipe",
    "Independent",
    "InterpolantPath",
    "LinearInterpolant",
    "LogitNormalTime",
    "Paired",
    "PathCoefficients",
    "PathSample",
    "SinkhornOT",
    "Straight",
    "TimeSampler",
    "TrigInterpolant",
    "UniformTime",
    "create_flow",
    "generate_reflow_pairs",
    "list_flows",
]
