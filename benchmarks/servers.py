"""The servers a benchmark compares: ours, the reference SDK's, and the raw echo ceiling."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.ours import CLASSES

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: Transform threads per worker, for our servers and the reference Flask server alike.
THREADS = 32
#: uvicorn flags of the reference runtime image (PROTOCOL.md §12.2).
RUNTIME_UVICORN_FLAGS = [
    "--log-level", "info",
    "--ws-max-size", "17179869184",
    "--ws-ping-interval", "0",
    "--ws-ping-timeout", "86400",
    "--no-access-log",
]  # fmt: skip


@dataclass(frozen=True)
class ServerKind:
    """One server stack: how to start it with a transform and a number of workers."""

    name: str  # e.g. "ours-fastapi"
    side: str  # "ours", "ref" or "raw"
    framework: str  # "fastapi", "flask", "http" or "raw"

    @property
    def ws(self) -> bool:
        """Whether it serves ``/ws``."""
        return self.framework in ("fastapi", "raw", "granian")

    def supports(self, transform: str) -> bool:
        """Whether it can run ``transform`` (the raw server only echoes)."""
        return self.side != "raw" or transform == "echo"

    def workers_used(self, workers: int) -> int:
        """Worker processes it actually runs (the reference stdlib server has one)."""
        return 1 if (self.side, self.framework) == ("ref", "http") else workers

    def command(
        self, transform: str, workers: int, ref_python: str | None
    ) -> tuple[list[str], dict[str, str]]:
        """argv (``{port}`` left to the launcher) and extra environment."""
        env = {"PYTHONPATH": f"{REPO}/src:{REPO}", "AISETL_THREADS": str(THREADS)}
        if self.framework == "granian":  # our FastAPI app on Granian (pip install granian)
            env["BENCH_TRANSFORM"] = transform
            argv = [
                sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
                "--host", "127.0.0.1", "--port", "{port}", "--workers", str(workers),
                "--blocking-threads", "1", "benchmarks.granian_app:app",
            ]  # fmt: skip
            return argv, env
        if self.side == "ours":
            argv = [
                sys.executable, "-m", "aisetl", "serve", f"benchmarks.ours:{CLASSES[transform]}",
                "--server", self.framework, "--workers", str(workers),
                "--host", "127.0.0.1", "--port", "{port}",
            ]  # fmt: skip
            return argv, env
        if self.side == "raw":
            argv = [sys.executable, "-m", "benchmarks.rawecho", "--port", "{port}"]
            return [*argv, "--workers", str(workers)], env
        if ref_python is None:
            raise RuntimeError("no reference interpreter (set AISETL_REFERENCE_PYTHON)")
        env = {"BENCH_FRAMEWORK": self.framework, "BENCH_TRANSFORM": transform}
        if self.framework == "fastapi":
            argv = [
                ref_python, "-m", "uvicorn", "reference_app:server.app", "--app-dir", str(HERE),
                "--host", "127.0.0.1", "--port", "{port}", "--workers", str(workers),
                *RUNTIME_UVICORN_FLAGS,
            ]  # fmt: skip
        elif self.framework == "flask":
            argv = [
                ref_python, "-m", "gunicorn", "reference_app:app", "--chdir", str(HERE),
                "--bind", "127.0.0.1:{port}", "--workers", str(workers),
                "--worker-class", "gthread", "--threads", str(THREADS), "--log-level", "warning",
            ]  # fmt: skip
        else:
            argv = [ref_python, str(HERE / "reference_app.py"), "{port}"]
        return argv, env


OURS = [ServerKind(f"ours-{fw}", "ours", fw) for fw in ("fastapi", "flask", "http")]
REFERENCE = [ServerKind(f"ref-{fw}", "ref", fw) for fw in ("fastapi", "flask", "http")]
RAW = ServerKind("raw-echo", "raw", "raw")
ALL = [*OURS, *REFERENCE, RAW]
#: Opt-in only (named with --server): our FastAPI app on Granian instead of uvicorn.
GRANIAN = ServerKind("ours-granian", "ours", "granian")
BY_NAME = {kind.name: kind for kind in [*ALL, GRANIAN]}


def reference_python() -> str | None:
    """The reference SDK's interpreter: ``$AISETL_REFERENCE_PYTHON``, else ``.venv-ref``."""
    configured = os.environ.get("AISETL_REFERENCE_PYTHON")
    candidate = configured or str(REPO / ".venv-ref" / "bin" / "python")
    return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
