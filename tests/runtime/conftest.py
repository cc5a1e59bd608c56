"""Start ``aisetl runtime`` as the runtime image would: a subprocess with the class in its
environment, in a folder where the test modules cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from aisetl.target import EmulatedTarget
from aisetl.testing import LocalETL

RUNTIME = [sys.executable, "-m", "aisetl", "runtime", "--host", "127.0.0.1", "--port", "{port}"]
#: No import path to the repository: a class must travel by value in its payload.
CHILD_ENV = {"PYTHONPATH": "", "AISETL_RETRY_BACKOFF": "0.01", "AISETL_GRACE_PERIOD": "1"}
DUMMY_TARGET = "http://127.0.0.1:9/v1/etl/_object/runtime-etl/ABCDEFGHIJ"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedTarget]:
    """One emulated target per test module."""
    with EmulatedTarget(tmp_path_factory.mktemp("target"), time_scale=0.01) as tgt:
        yield tgt


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime's working directory (like the image's /app)."""
    return tmp_path_factory.mktemp("app")


def launch(
    target: EmulatedTarget, name: str, env: Mapping[str, str], cwd: Path, argv: list[str] = RUNTIME
) -> LocalETL:
    """``aisetl runtime`` behind the emulated target, once healthy."""
    etl = target.launch(
        name, argv, comm="hpush", env={**CHILD_ENV, **env}, cwd=str(cwd), init_timeout=60
    )
    return LocalETL(target, etl)


def run_failing(
    env: Mapping[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``aisetl runtime`` to its end (it must fail before it serves)."""
    argv = [arg.replace("{port}", "0") for arg in RUNTIME]
    full = {**os.environ, "AIS_TARGET_URL": DUMMY_TARGET, **CHILD_ENV, **env}
    return subprocess.run(
        argv, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout, check=False
    )


def last_line(text: str) -> str:
    """The last non-empty line (what AIStore shows of a crashed container)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def tiny_wheel(folder: Path, module: str = "tinyword", word: bytes = b"tiny") -> Path:
    """A wheel of a one-module package whose ``WORD`` is ``word`` (installs offline)."""
    info = f"{module}-1.0.dist-info"
    files = {
        f"{module}.py": f"WORD = {word!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    path = folder / f"{module}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def fake_tool(folder: Path, name: str, *, log: Path, fail_with: str | None = None) -> None:
    """An executable ``name`` that appends its arguments to ``log`` (and fails if asked).

    It stands in for ``apk`` / ``apt-get``, which cannot install anything on a test machine.
    """
    body = f'echo "{name} $*" >> "{log}"\n'
    if fail_with is not None:
        body += f'echo "{fail_with}" >&2\nexit 1\n'
    script = folder / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
