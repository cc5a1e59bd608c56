"""Fixtures for compatibility tests against the reference SDK."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ..reference import reference_python

REFERENCE_STYLE = Path(__file__).parent / "reference_style"
REFERENCE_PREFIX = "aistore.sdk.etl.webserver"


@pytest.fixture(scope="session")
def ref_python() -> str:
    """The reference interpreter, or skip (``make test`` always provides it)."""
    found = reference_python()
    if found is None:
        pytest.skip(
            "reference SDK not available (set AISETL_REFERENCE_PYTHON or run make ref-venv)"
        )
    return found


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference-style transformers after the one-line migration: the import prefix only."""
    folder = tmp_path_factory.mktemp("migrated")
    for source in REFERENCE_STYLE.glob("*.py"):
        text = source.read_text()
        rewritten = re.sub(re.escape(REFERENCE_PREFIX), "aisetl", text)
        assert rewritten != text, f"{source.name} does not import the reference SDK"
        (folder / source.name).write_text(rewritten)
    shutil.copystat(REFERENCE_STYLE, folder)
    return folder
