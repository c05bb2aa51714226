"""Every public name (the package top's and each subpackage's ``__all__``) has a docstring of its own,
and so does every public method and property of its classes. The docs build runs this too."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import flowstudy


def _public_modules() -> list[str]:
    subpackages = [m.name for m in pkgutil.walk_packages(flowstudy.__path__, "flowstudy.") if m.ispkg]
    return ["flowstudy", *subpackages]


def _has_own_doc(obj: object) -> bool:
    doc = inspect.getdoc(obj)
    if not doc:
        return False
    # a dataclass without a docstring gets its signature as __doc__
    return not (inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("))


def _undocumented(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    missing = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants and type aliases: documented where they are assigned
        if not _has_own_doc(obj):
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(obj) and obj.__module__.startswith("flowstudy"):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, (property, classmethod, staticmethod))):
                    continue
                if not inspect.getdoc(getattr(obj, attr)) and not (isinstance(member, property) and inspect.getdoc(member)):
                    missing.append(f"{module_name}.{name}.{attr}")
    return missing


@pytest.mark.parametrize("module_name", _public_modules())
def test_every_public_name_has_a_docstring(module_name):
    assert _undocumented(module_name) == []


def test_every_subpackage_declares_its_public_names():
    assert [m for m in _public_modules() if not hasattr(importlib.import_module(m), "__all__")] == []


def test_the_check_notices_a_missing_docstring(monkeypatch):
    import flowstudy.api

    monkeypatch.setattr(flowstudy.api.Run.sample, "__doc__", None)
    assert _undocumented("flowstudy") == ["flowstudy.Run.sample"]
