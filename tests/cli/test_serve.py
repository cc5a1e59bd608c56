"""``aisetl serve``: a port in use is one clear error in every framework."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..servers.conftest import REPO, TEST_ENV

UPPER = "tests.transformers:Upper"


@pytest.mark.parametrize("framework", ["fastapi", "flask", "http"])
def test_a_port_in_use_is_a_clear_error(busy_port: int, framework: str) -> None:
    argv = [sys.executable, "-m", "aisetl", "serve", UPPER, "--server", framework,
            "--host", "127.0.0.1", "--port", str(busy_port)]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, **TEST_ENV, "AIS_TARGET_URL": "http://127.0.0.1:9/v1/etl/_object/x/y"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("aisetl serve: error:"), done.stderr
    assert f"cannot listen on 127.0.0.1:{busy_port}" in last and "in use" in last
