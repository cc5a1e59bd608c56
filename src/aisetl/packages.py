"""Install what a runtime payload asks for: ``PACKAGES`` with pip, ``OS_PACKAGES`` with the
image's package manager (``apk`` on Alpine, ``apt-get`` on Debian)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence


class InstallError(RuntimeError):
    """An installation failed; the message is one line naming the command and its reason."""


def _reason(stderr: str, code: int) -> str:
    """The installer's own last error line (``ERROR: ...`` preferred), else its exit code."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.upper().startswith(("ERROR", "E:"))]
    chosen = errors[-1] if errors else (lines[-1] if lines else "")
    return chosen or f"exit status {code}"


def _run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Run an installer: its output goes to our log; a failure raises :class:`InstallError`."""
    sys.stdout.flush()
    try:
        done = subprocess.run(
            list(argv),
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else {**os.environ, **env},
            check=False,
        )
    except OSError as exc:
        raise InstallError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.stderr:
        sys.stderr.write(done.stderr)
        sys.stderr.flush()
    if done.returncode != 0:
        shown = " ".join(argv)
        raise InstallError(f"`{shown}` failed: {_reason(done.stderr, done.returncode)}")


def pip_install(requirements: Sequence[str]) -> None:
    """``python -m pip install`` the requirements (version specifiers allowed), in one run."""
    if not requirements:
        return
    quiet = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}
    _run([sys.executable, "-m", "pip", "install", *requirements], env=quiet)
    importlib.invalidate_caches()  # modules installed just now must be importable


def os_package_manager() -> str | None:
    """``apk`` or ``apt-get``, whichever this system has (Alpine first), else ``None``."""
    for name in ("apk", "apt-get"):
        if shutil.which(name):
            return name
    return None


def os_install(packages: Sequence[str]) -> None:
    """Install system packages with ``apk add`` or ``apt-get install``."""
    if not packages:
        return
    manager = os_package_manager()
    if manager is None:
        raise InstallError(
            "OS_PACKAGES is set but this image has neither apk nor apt-get: build the runtime "
            "image from python:<version>-alpine or -slim, or install them in your own image"
        )
    if manager == "apk":
        _run(["apk", "add", "--no-cache", *packages])
        return
    quiet = {"DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], env=quiet)
    _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=quiet)
