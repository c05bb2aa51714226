"""requirements/lock.txt pins every package that `make demo`, `make test` and `make docs` install, at
versions that pyproject.toml's ranges allow; the Makefile installs through it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).parents[1]
INSTALLED_EXTRAS = ("dev", "docs")  # what the Makefile installs
NOT_LOCKED = {"mamba": "CUDA-only build (GPU machines install it from a wheel)", "sonar": "the SONAR encoder: not used by the two commands"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lock() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, line in enumerate((ROOT / "requirements/lock.txt").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert found, f"requirements/lock.txt:{number}: not an exact pin: {line!r}"
        name = canonicalize_name(found.group(1))
        assert name not in pins, f"requirements/lock.txt:{number}: {name} pinned twice"
        pins[name] = Version(found.group(2))
    return pins


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The project's dependencies plus those of ``extras``, self-references (flowstudy[a,b]) expanded."""
    project, seen, todo, out = _project(), set(), list(extras), [Requirement(r) for r in _project()["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "flowstudy":
                todo.extend(sorted(req.extras))
            else:
                out.append(req)
    return sorted((r for r in out if r.marker is None or r.marker.evaluate()), key=str)  # one order in every xdist worker


def test_every_lock_line_is_one_exact_pin():
    pins = _lock()
    assert len(pins) > 50  # the whole environment, not the direct dependencies alone
    assert "torch" in pins and not pins["torch"].local, "torch is pinned without a local label (+cpu), as PyPI names it"


@pytest.mark.parametrize("req", _requirements(INSTALLED_EXTRAS), ids=str)
def test_the_lock_covers_each_dependency_within_its_range(req):
    pins = _lock()
    name = canonicalize_name(req.name)
    assert name in pins, f"{req.name} (pyproject.toml) is not in requirements/lock.txt: run make lock"
    assert req.specifier.contains(pins[name], prereleases=True), f"lock has {name}=={pins[name]}, outside pyproject.toml's {req}"


def _self_extras(extra: str) -> set[str] | None:
    """The extras an extra names through flowstudy[...], or None if it requires other packages too."""
    reqs = [Requirement(text) for text in _project()["optional-dependencies"][extra]]
    if any(canonicalize_name(r.name) != "flowstudy" for r in reqs):
        return None
    return {e for r in reqs for e in r.extras}


def test_every_extra_is_locked_or_named_as_not_locked():
    extras = set(_project()["optional-dependencies"])
    covered = set(INSTALLED_EXTRAS)
    for extra in INSTALLED_EXTRAS:
        covered |= {e for text in _project()["optional-dependencies"][extra] for e in Requirement(text).extras}
    aliases = {e for e in extras - covered if (named := _self_extras(e)) is not None and named <= covered}  # e.g. all
    assert extras - covered - aliases == set(NOT_LOCKED), "a new extra: lock it (include it in dev or docs) or name why not"


def test_the_makefile_installs_through_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK := requirements/lock.txt" in makefile
    installs = [line for line in makefile.splitlines() if "pip install" in line and "lock-venv" not in line]
    assert installs and all("-c $(CONSTRAINTS)" in line for line in installs), installs
