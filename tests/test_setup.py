"""setup.py: every requirement is bounded below its next major release, and this environment satisfies them.

A fresh install next year must resolve to the stack that was tested: an unbounded ``peft>=0.14.0`` would pull
PEFT 1.0, which drops the pinned transformers 4.48.
"""

from __future__ import annotations

import ast
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT

UPPER = ("<", "<=", "==", "===", "~=")


def _setup_values() -> dict[str, object]:
    """CORE, EXTRAS and UNBOUNDED as written in setup.py (read, not run: running it calls setup())."""
    values = {}
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("CORE", "EXTRAS", "UNBOUNDED"):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    assert set(values) == {"CORE", "EXTRAS", "UNBOUNDED"}, sorted(values)
    return values


def _requirements() -> list[tuple[str, Requirement]]:
    """``(where, requirement)`` for every install and extra requirement."""
    values = _setup_values()
    found = [("install_requires", Requirement(r)) for r in values["CORE"]]
    for extra, requirements in values["EXTRAS"].items():
        found += [(f"extra {extra}", Requirement(r)) for r in requirements]
    return found


def _installed(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def test_every_requirement_has_an_upper_bound_or_a_documented_reason():
    unbounded = _setup_values()["UNBOUNDED"]
    names = {req.name for _, req in _requirements()}
    assert set(unbounded) <= names, f"UNBOUNDED names no requirement: {set(unbounded) - names}"
    assert all(isinstance(why, str) and len(why) > 20 for why in unbounded.values()), unbounded
    loose = [f"{where}: {req}" for where, req in _requirements()
             if req.name not in unbounded and not any(spec.operator in UPPER for spec in req.specifier)]  # fmt: skip
    assert not loose, "requirements without an upper bound (bound them below their next major release): " + str(loose)


def test_the_installed_versions_satisfy_setup_py():
    """What the tests run on is what setup.py allows; every install requirement is installed (extras where they are)."""
    wrong = []
    for where, req in _requirements():
        version = _installed(req.name)
        if version is None:
            assert where != "install_requires", f"{req.name} is not installed"
            continue
        if not req.specifier.contains(version, prereleases=True):
            wrong.append(f"{req.name} {version} does not satisfy {req} ({where})")
    assert not wrong, wrong


def test_each_upper_bound_is_at_most_the_next_major_release_of_the_tested_version():
    """A bound above the next major of the version installed here would let an untested major release in."""
    too_loose = []
    for where, req in _requirements():
        version = _installed(req.name)
        if version is None:
            continue
        next_major = Version(f"{version.major + 1}") if version.major else Version("1")
        for spec in req.specifier:
            if spec.operator in ("<", "<=") and Version(spec.version) > next_major:
                too_loose.append(f"{req} ({where}): tested {version}, next major {next_major}")
    assert not too_loose, too_loose


@pytest.mark.parametrize("line, bounded", [("peft>=0.14.0", False), ("peft>=0.14.0,<1.0", True),
                                           ("decord==0.6.0", True), ("torch>=2.1", False)])  # fmt: skip
def test_the_check_tells_a_bound_from_a_lower_limit(line, bounded):
    assert any(spec.operator in UPPER for spec in Requirement(line).specifier) == bounded
