"""constraints.txt (the versions the suite last passed with) agrees with pyproject's bounds, and the
environment running the suite is the one it pins (``make setup`` installs with ``-c constraints.txt``)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra brings tomli, the same parser
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
# What `make setup` installs besides the dependencies (the Makefile's `-e ".[dev,deepspeed,wandb]"`).
SETUP_EXTRAS = ("dev", "deepspeed", "wandb")


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def requirements(extras: tuple[str, ...] = SETUP_EXTRAS) -> list[Requirement]:
    """The dependencies and ``extras``' requirements that apply to this Python (markers evaluated)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [r for name in extras for r in project["optional-dependencies"][name]]
    parsed = [Requirement(r) for r in [*project["dependencies"], *wanted]]
    return [r for r in parsed if r.marker is None or r.marker.evaluate()]


def test_make_setup_installs_the_extras_this_file_checks():
    assert '-e ".[dev,deepspeed,wandb]"' in (REPO / "Makefile").read_text()


def test_every_dependency_is_pinned_within_its_pyproject_bounds():
    pins = pinned()
    for requirement in requirements((*SETUP_EXTRAS, "docs")):
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
    # What `make setup` itself asks for must be there: a missing deepspeed or wandb would otherwise
    # skip their checks without a word. Other pins may be absent (another OS's, the docs extra's).
    required = {canonicalize_name(r.name) for r in requirements()} - {"torch"}
    for name, version in pinned().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in required:
                differ.append(f"{name}: pinned and installed by make setup, but not installed")
            continue
        if re.sub(r"\+.*", "", installed) != version:
            differ.append(f"{name}: installed {installed}, pinned {version}")
    assert not differ, "; ".join(differ)
