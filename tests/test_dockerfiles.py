"""The repository's Dockerfiles build from this tree: what they copy exists in their build
context, and they install aisetl from a wheel of the tree, never from a package index (aisetl
is not published). ``make image-check`` builds and runs them where a container engine can."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from aisetl.cli.new import create

REPO = Path(__file__).resolve().parents[1]
ROOT_CONTEXT = sorted(
    [REPO / "docker" / "runtime" / "Dockerfile", *REPO.glob("examples/*/Dockerfile")]
)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def copied_sources(dockerfile: Path) -> list[str]:
    """Sources of every COPY from the build context (not ``--from`` a stage)."""
    sources: list[str] = []
    for word, rest in instructions(dockerfile):
        if word == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    return sources


def ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(
        fnmatch.fnmatch(path, pattern) or path.split("/")[0] == pattern for pattern in patterns
    )


def aisetl_installs(dockerfile: Path) -> list[str]:
    """RUN instructions that install aisetl."""
    return [
        rest
        for word, rest in instructions(dockerfile)
        if word == "RUN" and "pip install" in rest and re.search(r"\baisetl\b", rest)
    ]


@pytest.mark.parametrize("dockerfile", ROOT_CONTEXT, ids=lambda p: str(p.relative_to(REPO)))
def test_built_from_the_repository_root(dockerfile: Path) -> None:
    sources = copied_sources(dockerfile)
    assert {"pyproject.toml", "README.md", "LICENSE", "src"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), f"{dockerfile}: COPY {source}: no such path"
        assert not ignored(source), f"{source} is excluded by .dockerignore"
    assert any("pip wheel" in rest and "/src" in rest for _, rest in instructions(dockerfile))
    installs = aisetl_installs(dockerfile)
    assert installs, f"{dockerfile} does not install aisetl"
    for run in installs:
        first = run.split("&&")[0]
        # The first install is the wheel: from /wheels only, before anything names aisetl.
        assert "/wheels" in first and ("--no-index" in first or "--no-deps /wheels/" in first)


@pytest.mark.parametrize("dockerfile", ROOT_CONTEXT[1:], ids=lambda p: p.parent.name)
def test_an_example_copies_its_own_server(dockerfile: Path) -> None:
    folder = dockerfile.parent.relative_to(REPO).as_posix()
    assert f"{folder}/server.py" in copied_sources(dockerfile)
    assert f"docker build -f {folder}/Dockerfile" in (dockerfile.parent / "README.md").read_text()


def test_the_runtime_image_entry_point() -> None:
    pairs = instructions(REPO / "docker" / "runtime" / "Dockerfile")
    assert ("ENTRYPOINT", '["aisetl", "runtime"]') in pairs
    assert ("EXPOSE", "8000") in pairs
    args = [rest for word, rest in pairs if word == "ARG"]
    assert "PYTHON=3.12" in args and "VARIANT=slim" in args
    assert next(rest for word, rest in pairs if word == "FROM").startswith(
        "python:${PYTHON}-${VARIANT}"
    )


@pytest.mark.parametrize("framework", ["fastapi", "flask", "http"])
def test_a_new_project_builds_from_its_own_folder(tmp_path: Path, framework: str) -> None:
    folder = tmp_path / "word-upper"
    create(folder, framework)
    dockerfile = folder / "Dockerfile"
    for source in copied_sources(dockerfile):
        assert (folder / source).exists(), f"COPY {source}: not in the project"
    runs = [rest for word, rest in instructions(dockerfile) if word == "RUN"]
    assert any(run.startswith("pip install") and "-r requirements.txt" in run for run in runs)
    requirement = (folder / "requirements.txt").read_text().strip()
    wheel = requirement.split("[")[0]
    assert wheel.startswith("./wheels/aisetl-") and (folder / wheel).is_file()
