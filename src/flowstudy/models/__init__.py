"""Velocity networks v(x, t): [B, D] -> [B, D], and the registry that builds them.

    model = create_model("dit-small", input_dim=1024)
    rebuilt = create_model(model.arch, **model.config)

Registered families (each with presets ``-tiny``, ``-small``, ``-base``; the plain name
is ``-small``): ``mlp`` (SimpleMLP), ``dit`` (DiTVelocityNetwork), ``unet`` (UNetMLP),
``mamba``, ``mamba-tied`` and ``mamba-merged`` (MambaVelocityNetwork with
bidirectional = "separate", "tied" or "merged").
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from flowstudy.errors import ConfigError
from flowstudy.models.dit import DiTVelocityNetwork
from flowstudy.models.mamba_velocity import MambaVelocityNetwork
from flowstudy.models.mlp import SimpleMLP, timestep_embedding
from flowstudy.models.skip import TimeGatedSkip
from flowstudy.models.ssm.backend import triton_status
from flowstudy.models.ssm.fused import fused_status
from flowstudy.models.unet_mlp import UNetMLP

__all__ = [
    "DiTVelocityNetwork",
    "MambaVelocityNetwork",
    "SimpleMLP",
    "TimeGatedSkip",
    "UNetMLP",
    "count_parameters",
    "create_model",
    "list_architectures",
    "mamba_backends",
    "timestep_embedding",
]

_PRESETS: dict[str, dict[str, tuple[type[nn.Module], dict[str, Any]]]] = {
    "mlp": {
        "tiny": (SimpleMLP, {"hidden_dim": 128, "num_layers": 4}),
        "small": (SimpleMLP, {"hidden_dim": 256, "num_layers": 5}),
        "base": (SimpleMLP, {"hidden_dim": 512, "num_layers": 6}),
    },
    "dit": {
        "tiny": (DiTVelocityNetwork, {"chunk_size": 128, "hidden_dim": 96, "depth": 2,
                                      "num_heads": 4, "mlp_ratio": 2.0}),
        "small": (DiTVelocityNetwork, {"chunk_size": 128, "hidden_dim": 128, "depth": 4,
                                       "num_heads": 4, "mlp_ratio": 2.0}),
        "base": (DiTVelocityNetwork, {"chunk_size": 64, "hidden_dim": 256, "depth": 6,
                                      "num_heads": 8, "mlp_ratio": 4.0}),
    },
    "unet": {
        "tiny": (UNetMLP, {"widths": (256, 128, 64)}),
        "small": (UNetMLP, {"widths": (512, 256, 128)}),
        "base": (UNetMLP, {"widths": (1024, 512, 256)}),
    },
}
_MAMBA_SIZES = {
    "tiny": {"chunk_size": 64, "hidden_dim": 128, "num_layers": 2},
    "small": {"chunk_size": 64, "hidden_dim": 256, "num_layers": 4},
    "base": {"chunk_size": 64, "hidden_dim": 384, "num_layers": 6},
}
for _family, _mode in (("mamba", "separate"), ("mamba-tied", "tied"), ("mamba-merged", "merged")):
    _PRESETS[_family] = {
        size: (MambaVelocityNetwork, {**kw, "bidirectional": _mode}) for size, kw in _MAMBA_SIZES.items()
    }

# name -> (class, preset kwargs); the plain family name is its "small" preset.
REGISTRY: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {}
for _family, _sizes in _PRESETS.items():
    for _size, _entry in _sizes.items():
        REGISTRY[f"{_family}-{_size}"] = _entry
    REGISTRY[_family] = _sizes["small"]


def list_architectures() -> list[str]:
    """All registered architecture names, sorted."""
    return sorted(REGISTRY)


def _resolve_kwargs(arch: str, cls: type[nn.Module], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Bind kwargs to cls's constructor and fill in its defaults; reject unknown names."""
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p != "self"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for architecture {arch!r}; "
            f"valid options: {', '.join(valid)}"
        )
    resolved = {p: params[p].default for p in valid}
    resolved.update(kwargs)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in resolved.items()}


def create_model(arch: str, *, skip: bool = True, **overrides: Any) -> nn.Module:
    """Build a registered velocity network; overrides replace the preset's kwargs.

    ``skip=True`` (the default) wraps the network in :class:`TimeGatedSkip`,
    v = net(x, t) + g(t) ⊙ x, which gives every architecture a full-rank linear path
    (see :mod:`flowstudy.models.skip`); ``skip=False`` builds the bare network.
    The model carries ``model.arch`` and ``model.config`` (every constructor kwarg,
    resolved, and ``skip``), so ``create_model(model.arch, **model.config)`` rebuilds it.
    Raises ConfigError (a ValueError) for unknown names or options and for invalid sizes.
    """
    if arch not in REGISTRY:
        raise ConfigError(
            f"unknown architecture {arch!r}; valid architectures: {', '.join(list_architectures())}"
        )
    cls, preset = REGISTRY[arch]
    config = _resolve_kwargs(arch, cls, {**preset, **overrides})
    try:
        model = cls(**config)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid configuration for {arch!r}: {exc}") from exc
    if skip:
        model = TimeGatedSkip(model, config["input_dim"])
    model.arch = arch
    model.config = {**config, "skip": bool(skip)}
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameters (weights shared between modules count once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def mamba_backends() -> dict[str, tuple[bool, str]]:
    """backend -> (available, reason) for the Mamba layers' compute backends."""
    return {
        "torch": (True, "pure-PyTorch selective scan (CPU and CUDA)"),
        "fused": fused_status(),
        "triton": triton_status(),
    }


def __getattr__(name: str) -> Any:
    # Lazy, like flowstudy.models.mamba_velocity.MAMBA_AVAILABLE: no CUDA work at import.
    if name == "MAMBA_AVAILABLE":
        return fused_status()[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
