"""Launching server processes: environment, readiness, failures, stopping."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from aisetl.target import EmulatedTarget, ServerProcess, ServerStartError
from aisetl.target.process import expand_argv

SERVER = """
import http.server, os, signal, sys
port, mode = int(sys.argv[1]), sys.argv[2]
for key in ("AIS_TARGET_URL", "direct_put", "DIRECT_PUT", "FOO", "A"):
    print(f"{key}={os.environ.get(key)}", flush=True)
if mode == "crash":
    print("boom: bad config", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("SIGTERM ignored", flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if mode == "sick" else 200)
        self.send_header("Content-Length", "7")
        self.end_headers()
        self.wfile.write(b"Running")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return str(path)


def test_environment_and_logs(script: str) -> None:
    with EmulatedTarget() as tgt:
        etl = tgt.launch("env-etl", [sys.executable, script, "{port}", "ok"], env={"FOO": "bar"})
        server = etl.server()
        assert server.process is not None and server.process.alive
        log = etl.logs()
        assert f"AIS_TARGET_URL={etl.target_url()}" in log
        assert etl.target_url() == f"{tgt.url}/v1/etl/_object/env-etl/{etl.secret}"
        assert len(etl.secret) == 10 and etl.secret.isalpha()
        assert "direct_put=true" in log and "FOO=bar" in log  # lower case, as a target sets it
        assert "DIRECT_PUT=None" in log
        process = server.process
    assert not process.alive  # stopped with the target


def test_runtime_env_cannot_override_target_variables(script: str) -> None:
    with EmulatedTarget() as tgt:
        etl = tgt.launch(
            "env-etl",
            [sys.executable, script, "{port}", "ok"],
            env={"AIS_TARGET_URL": "http://elsewhere", "direct_put": "true"},
            direct_put=False,
        )
        assert "AIS_TARGET_URL=http://elsewhere" not in etl.logs()
        assert "direct_put=false" in etl.logs()


def test_top_level_env_overrides_target_variables(script: str) -> None:
    """PROTOCOL.md §2.1: the init message's top-level env comes after the target's own."""
    with EmulatedTarget() as tgt:
        etl = tgt.launch(
            "env-etl",
            [sys.executable, script, "{port}", "ok"],
            env={"direct_put": "true", "A": "runtime"},
            top_env={"direct_put": "true", "A": "top"},
            direct_put=False,
        )
        log = etl.logs()
        assert "direct_put=true" in log and "A=top" in log and "A=runtime" not in log


def test_crash_before_healthy(script: str) -> None:
    with EmulatedTarget() as tgt:
        with pytest.raises(ServerStartError, match="exited with code 3") as info:
            tgt.launch("bad-etl", [sys.executable, script, "{port}", "crash"])
        assert "boom: bad config" in info.value.log
        assert "bad-etl" not in tgt.cluster.etls


def test_never_healthy(script: str) -> None:
    with EmulatedTarget() as tgt:
        started = time.monotonic()
        with pytest.raises(ServerStartError, match="did not become healthy") as info:
            tgt.launch("sick-etl", [sys.executable, script, "{port}", "sick"], init_timeout=0.8)
        assert time.monotonic() - started < 5
        assert "status 500" in str(info.value)


def test_stop_escalates_to_sigkill(script: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    process = ServerProcess([sys.executable, script, "0", "stubborn"], port=0, log_path=log)
    ready = time.monotonic() + 30  # on a loaded machine the interpreter may take a while
    while "SIGTERM ignored" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < ready, "the stubborn server never started"
        time.sleep(0.02)
    started = time.monotonic()
    assert process.stop(grace=0.3) == -9
    assert time.monotonic() - started < 3 and not process.alive


def test_fixed_port(script: str, held_port: int) -> None:
    port = held_port
    with EmulatedTarget() as tgt:
        etl = tgt.launch("port-etl", [sys.executable, script, "{port}", "ok"], port=port)
        assert etl.url() == f"http://127.0.0.1:{port}"


def test_expand_argv() -> None:
    assert expand_argv(["x", "--port={port}", "{host}:{port}"], 8, "h") == ["x", "--port=8", "h:8"]
