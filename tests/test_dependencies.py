"""Dependencies as a library declares them: ranges in pyproject.toml, exact versions in
constraints.txt, and README's commands (run verbatim by .ci/run) installing through the constraints."""

from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
README = (REPO / "README.md").read_text()


def _requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != "autopanoptic"]  # extras naming other extras


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_pyproject_declares_ranges_not_pins():
    for req in _requirements():
        assert all(spec.operator not in ("==", "===") for spec in req.specifier), f"{req} is an exact pin"
        assert any(spec.operator == ">=" for spec in req.specifier), f"{req} names no lowest version"


def test_every_dependency_is_pinned_in_constraints_within_its_range():
    pins = _constraints()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} has no exact version in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt {name}=={pins[name]} is outside {req}"


def _commands() -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv .*?)\n```", README)


def test_readme_commands_install_through_the_constraints():
    commands = _commands()
    assert len(commands) == 2
    for command in commands:
        installs = [part for part in command.split(" && ") if "/pip install " in part]
        assert installs and all("-c constraints.txt" in part for part in installs), command


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = next(c for c in _commands() if "pytest" in c)
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


@pytest.mark.parametrize("name", ["torch", "torchvision"])
def test_torch_lower_bounds_are_the_documented_ones(name):
    # README's "into an existing environment" paragraph quotes these bounds; keep them in step.
    req = next(r for r in _requirements() if r.name == name)
    assert f"`{req}`" in README
