"""Named flow methods: ``create_flow(name, **overrides)`` over a plain dict of recipes.

=================  ==========  ============  ==================================================
name               path        coupling      paper
=================  ==========  ============  ==================================================
icfm               straight    independent   Lipman et al. 2023; Tong et al. 2023 (I-CFM)
otcfm              straight    exact_ot      Tong et al. 2023 (OT-CFM), exact minibatch OT
otcfm-sinkhorn     straight    sinkhorn      entropic minibatch OT, rounded to a permutation
si-linear          linear      independent   Albergo & Vanden-Eijnden 2023, gamma = 0.5·t(1-t)
si-trig            trig        independent   same, trigonometric (GVP) schedule
reflow             straight    paired        Liu et al. 2022 (rectified flow on ODE pairs)
=================  ==========  ============  ==================================================

All use ``uniform`` time unless overridden. The SI recipes switch the latent noise on with
g = 0.5: gamma(t) = g·t·(1 - t) peaks at std 0.125 at t = 1/2, a few percent of the variance
of x_t for standardised data — enough to smooth the path's density, small enough not to
dominate the target.

Overrides: ``path=``, ``coupling=``, ``time_sampler=`` take a registry name or an instance;
any other keyword goes to the one part whose class has that option, e.g. ``sigma`` (straight),
``gamma`` (linear, trig), ``reg``/``max_iters``/``tol`` (sinkhorn), ``mean``/``std``
(logit_normal): ``create_flow("icfm", sigma=0.1, time_sampler="logit_normal", std=0.8)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from flowstudy.errors import ConfigError
from flowstudy.flows.couplings import COUPLINGS
from flowstudy.flows.method import FlowMethod
from flowstudy.flows.paths import PATHS
from flowstudy.flows.time_samplers import TIME_SAMPLERS

SI_GAMMA = 0.5
"""Default latent-noise scale g of the stochastic-interpolant recipes."""


@dataclass(frozen=True)
class FlowRecipe:
    """Registry names of a flow's parts and the options that differ from the parts' defaults."""

    path: str
    coupling: str
    time_sampler: str = "uniform"
    options: dict[str, Any] = field(default_factory=dict)


FLOWS: dict[str, FlowRecipe] = {
    "icfm": FlowRecipe("straight", "independent"),
    "otcfm": FlowRecipe("straight", "exact_ot"),
    "otcfm-sinkhorn": FlowRecipe("straight", "sinkhorn"),
    "si-linear": FlowRecipe("linear", "independent", options={"gamma": SI_GAMMA}),
    "si-trig": FlowRecipe("trig", "independent", options={"gamma": SI_GAMMA}),
    "reflow": FlowRecipe("straight", "paired"),
}

_PART_REGISTRIES: dict[str, dict[str, type]] = {
    "path": PATHS,
    "coupling": COUPLINGS,
    "time_sampler": TIME_SAMPLERS,
}


def list_flows() -> list[str]:
    """Names accepted by :func:`create_flow`."""
    return list(FLOWS)


def create_flow(name: str, **overrides: Any) -> FlowMethod:
    """Build the flow method ``name`` with ``overrides`` (module docstring)."""
    if name not in FLOWS:
        raise ConfigError(f"unknown flow {name!r}; valid: {', '.join(FLOWS)}")
    recipe = FLOWS[name]
    chosen = {role: overrides.pop(role, getattr(recipe, role)) for role in _PART_REGISTRIES}
    for role, part in chosen.items():
        if isinstance(part, str) and part not in _PART_REGISTRIES[role]:
            raise ConfigError(f"unknown {role} {part!r}; valid: {', '.join(_PART_REGISTRIES[role])}")
    options = {**_applicable(recipe.options, chosen), **overrides}
    routed: dict[str, dict[str, Any]] = {role: {} for role in _PART_REGISTRIES}
    for key, value in options.items():
        routed[_owner(name, key, chosen)][key] = value
    parts = {role: _build(role, chosen[role], routed[role]) for role in _PART_REGISTRIES}
    return FlowMethod(name=name, **parts)


def _option_names(role: str, part: Any) -> set[str]:
    """Options a part accepts: the dataclass fields of its class (none for an instance)."""
    if not isinstance(part, str):
        return set()
    cls = _PART_REGISTRIES[role].get(part)
    return {f.name for f in dataclasses.fields(cls)} if cls is not None else set()


def _applicable(defaults: dict[str, Any], chosen: dict[str, Any]) -> dict[str, Any]:
    """Recipe defaults that the chosen parts still accept (e.g. gamma after ``path="straight"``)."""
    accepted = set().union(*(_option_names(role, part) for role, part in chosen.items()))
    return {k: v for k, v in defaults.items() if k in accepted}


def _owner(flow: str, key: str, chosen: dict[str, Any]) -> str:
    owners = [role for role, part in chosen.items() if key in _option_names(role, part)]
    if not owners:
        valid = sorted(set().union(*(_option_names(role, part) for role, part in chosen.items())))
        parts = ", ".join(f"{role}={part!r}" for role, part in chosen.items())
        raise ConfigError(
            f"flow {flow!r} ({parts}) has no option {key!r}; valid options: {', '.join(valid) or 'none'}"
        )
    if len(owners) > 1:
        raise ConfigError(f"option {key!r} of flow {flow!r} is ambiguous between parts {owners}")
    return owners[0]


def _build(role: str, part: Any, options: dict[str, Any]) -> Any:
    if not isinstance(part, str):
        return part  # an instance, used as given
    return _PART_REGISTRIES[role][part](**options)
