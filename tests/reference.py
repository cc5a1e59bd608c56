"""Where the reference SDK (``aistore[etl]`` 2.0.0, in its own virtual environment) lives."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def reference_python() -> str | None:
    """Interpreter with the reference SDK: ``$AISETL_REFERENCE_PYTHON``, else ``.venv-ref``."""
    configured = os.environ.get("AISETL_REFERENCE_PYTHON")
    candidate = configured or str(REPO / ".venv-ref" / "bin" / "python")
    return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
