"""What ``flowstudy info`` reports: versions, devices and everything registered."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import torch

from flowstudy.version import __version__

OPTIONAL_PACKAGES = {
    "torchdiffeq": "ode",
    "POT": "ot",
    "matplotlib": "plot",
    "botorch": "gp",
    "gpytorch": "gp",
    "ray": "ray",
    "tensorboard": "tracking",
    "mlflow-skinny": "tracking",
    "mamba-ssm": "mamba",
}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _devices() -> dict[str, object]:
    cuda = torch.cuda.is_available()
    return {
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda_available": cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "cuda_version": torch.version.cuda,
    }


def _architectures() -> list[dict[str, object]]:
    from flowstudy.models import count_parameters, create_model, list_architectures

    rows = []
    for name in list_architectures():
        with torch.device("meta"):  # parameter counts without allocating weights
            model = create_model(name)
        rows.append({"name": name, "parameters": count_parameters(model)})
    return rows


def collect_info() -> dict[str, object]:
    from flowstudy.flows import list_flows
    from flowstudy.models import mamba_backends
    from flowstudy.solvers import list_solvers

    return {
        "flowstudy": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "optional": {pkg: {"extra": extra, "version": _version(pkg)} for pkg, extra in OPTIONAL_PACKAGES.items()},
        "devices": _devices(),
        "architectures": _architectures(),
        "mamba_backends": {name: {"available": ok, "reason": why} for name, (ok, why) in mamba_backends().items()},
        "flows": list_flows(),
        "solvers": list_solvers(),
    }
