"""``aisetl serve``: a port in use is one clear error; a local serve brings its own target."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ..servers.conftest import REPO, TEST_ENV

UPPER = "tests.transformers:Upper"
#: Loopback requests never go through a proxy the environment may name.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


def _listening(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # LISTEN
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def _request(url: str, method: str = "GET", data: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _DIRECT.open(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("framework", ["fastapi", "flask", "http"])
def test_without_a_cluster_serve_brings_an_emulated_target(
    tmp_path: Path, framework: str, held_port: int
) -> None:
    (tmp_path / "note.txt").write_bytes(b"hello")
    port = held_port
    env = {k: v for k, v in os.environ.items() if k not in ("AIS_TARGET_URL", "DIRECT_PUT")}
    argv = [sys.executable, "-m", "aisetl", "serve", UPPER, "--server", framework,
            "--port", str(port)]  # fmt: skip
    env.update(TEST_ENV, AISETL_GRACE_PERIOD="2")
    proc = subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        lines = []
        for _ in range(200):  # the instructions come before the server starts
            line = proc.stderr.readline()
            lines.append(line)
            if line.startswith("add ?etl_args") or not line:
                break
        text = "".join(lines)
        match = re.search(r"emulated AIStore target runs at (http://127\.0\.0\.1:\d+)", text)
        assert match, text
        target = match[1]
        server = f"http://127.0.0.1:{port}"
        for _ in range(200):  # up to 20 s
            if _listening(port):
                break
            time.sleep(0.1)
        assert _listening(port) == {"127.0.0.1"}
        commands = [line.strip() for line in lines if line.strip().startswith("curl")]
        assert len(commands) == 4 and all("note.txt" in c for c in commands)
        assert _request(f"{server}/local/note.txt", "PUT", b"abc") == (200, b"ABC")
        assert _request(f"{server}/ais%2F@%23%2Flocal%2Fnote.txt") == (200, b"HELLO")
        assert _request(f"{target}/v1/objects/local/note.txt?etl_name=upper-etl") == (200, b"HELLO")
        hop = f"{target}/ais%2F@%23%2Flocal%2Fout%2Fnote.txt"
        status, _ = _request(f"{server}/local/note.txt", "PUT", b"xyz", {"Ais-Node-Url": hop})
        assert status == 204
        assert (tmp_path / "out" / "note.txt").read_bytes() == b"XYZ"
        assert _request(f"{server}/health")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 0


def test_in_a_container_nothing_is_emulated(held_port: int) -> None:
    port = held_port
    argv = [sys.executable, "-m", "aisetl", "serve", UPPER, "--server", "http", "--port", str(port)]
    env = {**os.environ, **TEST_ENV, "AIS_TARGET_URL": "http://127.0.0.1:9/v1/etl/_object/x/y"}
    proc = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(200):  # up to 20 s
            if _listening(port):
                break
            time.sleep(0.1)
        assert _listening(port) == {"0.0.0.0"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "emulated" not in err
