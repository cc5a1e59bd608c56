"""The declared bounds, the lock and the floors file agree (else: run ``make lock``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: What aisetl leans on beyond a public API, or whose behaviour its wire tests pin down.
BOUNDED = (
    "uvicorn", "gunicorn", "fastapi", "flask", "starlette", "httptools", "websockets",
    "urllib3", "uvloop",
)  # fmt: skip


def declared(*extras: str) -> dict[str, Requirement]:
    """The requirements of the core dependencies and the given extras, by name."""
    texts = list(PROJECT["project"]["dependencies"])
    for extra in extras:
        texts += PROJECT["project"]["optional-dependencies"][extra]
    requirements = (Requirement(text) for text in texts)
    return {canonicalize_name(req.name): req for req in requirements if req.name != "aisetl"}


def read(name: str) -> list[Requirement]:
    """The requirement lines of ``requirements/<name>``."""
    lines = (REPO / "requirements" / name).read_text().splitlines()
    texts = (line.split("#")[0].strip() for line in lines)
    return [Requirement(text) for text in texts if text and not text.startswith("-")]


def pins(name: str) -> dict[str, list[Version]]:
    """The pinned versions of ``requirements/<name>``, by package (one per Python marker)."""
    result: dict[str, list[Version]] = {}
    for req in read(name):
        (spec,) = req.specifier
        assert spec.operator == "==", req
        result.setdefault(canonicalize_name(req.name), []).append(Version(spec.version))
    return result


def floor(requirement: Requirement) -> Version | None:
    lows = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return lows[0] if lows else None


@pytest.mark.parametrize("name", BOUNDED)
def test_each_package_we_lean_on_has_a_floor_and_a_ceiling(name: str) -> None:
    requirement = declared("fastapi", "flask")[name]
    operators = sorted(spec.operator for spec in requirement.specifier)
    assert operators == ["<", ">="], requirement


def test_the_floors_file_pins_every_declared_floor() -> None:
    floors = pins("oldest.txt")
    for name, requirement in declared("fastapi", "flask", "dev").items():
        low = floor(requirement)
        if low is not None:
            assert floors.get(name) == [low], f"{requirement}: oldest.txt has {floors.get(name)}"


def test_the_lock_is_inside_the_declared_bounds() -> None:
    locked = pins("lock.txt")
    for name, requirement in declared("fastapi", "flask", "examples", "bench", "dev").items():
        assert name in locked, f"{name} is not in lock.txt"
        for version in locked[name]:
            assert requirement.specifier.contains(version, prereleases=True), (name, version)


def test_the_lock_builds_with_what_the_build_system_requires() -> None:
    build = {canonicalize_name(req.name): req for req in read("build.in")}
    for text in PROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        assert build[canonicalize_name(requirement.name)] == requirement
