"""constraints.txt (the versions the suite last passed with) agrees with pyproject's bounds, and the
environment running the suite is the one it pins (``make setup`` installs with ``-c constraints.txt``)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for name in ("deepspeed", "wandb", "dev") for r in project["optional-dependencies"][name]]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def test_every_dependency_is_pinned_within_its_pyproject_bounds():
    pins = pinned()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        if name == "torch":  # pinned by `make setup` itself (CPU build), not in the file
            assert name not in pins
            continue
        assert name in pins, f"{requirement.name} is not in constraints.txt (run make constraints)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside pyproject's {requirement.specifier}"
        )


def test_the_suite_runs_on_the_pinned_versions():
    # A suite run on other versions than the file says was tested: refresh it (make constraints) or
    # reinstall (make setup).
    differ = []
    for name, version in pinned().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a platform-specific pin (e.g. a package only another OS pulls in)
        if re.sub(r"\+.*", "", installed) != version:
            differ.append(f"{name}: installed {installed}, pinned {version}")
    assert not differ, "; ".join(differ)
