"""``aisetl get``: one object through a real server, to stdout or a file."""

from __future__ import annotations

import os
import pty
import select
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aisetl
from aisetl.cli import main

SERVERS = str(Path(__file__).parent.parent / "testing" / "servers.py")


@pytest.fixture
def obj(tmp_path: Path) -> Path:
    path = tmp_path / "in put.txt"
    path.write_bytes(b"hello")
    return path


@pytest.mark.parametrize(("comm", "fqn"), [("hpush", False), ("hpull", True), ("ws", False)])
def test_stdout(
    obj: Path, comm: str, fqn: bool, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    argv = ["get", f"{SERVERS}:Upper", str(obj), "--comm", comm, "--args", "!"]
    assert main(argv + (["--fqn"] if fqn else [])) == 0
    assert capsysbinary.readouterr().out == b"HELLO!"


def test_output_file(obj: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.bin"
    assert main(["get", f"{SERVERS}:Upper", str(obj), "-o", str(out), "--server", "http"]) == 0
    assert out.read_bytes() == b"HELLO"
    assert "wrote" in capsys.readouterr().err


def test_server_error_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"bad")
    out = tmp_path / "result.bin"
    assert main(["get", f"{SERVERS}:Upper", str(bad), "-o", str(out), "--server", "http"]) == 1
    assert "ETL error: cannot take" in capsys.readouterr().err
    assert not out.exists()
    boom = tmp_path / "boom.txt"
    boom.write_bytes(b"boom")
    assert main(["get", f"{SERVERS}:Upper", str(boom), "--server", "http"]) == 1
    assert "exploded" in capsys.readouterr().err  # the log tail explains a 500


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["get", f"{SERVERS}:Upper", "/no/such/file"], "no such file"),
        (["get", f"{SERVERS}:Nope", "FILE"], "has no attribute 'Nope'"),
        (["get", f"{SERVERS}:Upper", "FILE", "-o", "/no/such/dir/x"], "does not exist"),
        (["get", f"{SERVERS}:Upper", "FILE", "--comm", "ws", "--server", "flask"], "--comm ws"),
        (["get", f"{SERVERS}:Crash", "FILE", "--server", "http"], "model file missing"),
    ],
)
def test_bad_input(
    argv: list[str], message: str, obj: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(obj) if a == "FILE" else a for a in argv]) == 2
    assert message in capsys.readouterr().err


def _aisetl(*argv: str, **options: Any) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aisetl", *argv], capture_output=True, timeout=90, env=env, **options
    )


def test_a_folder_points_to_aisetl_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", f"{SERVERS}:Upper", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is a folder; use aisetl run {SERVERS}:Upper --src {tmp_path}" in err


@pytest.mark.parametrize("framework", ["http", "flask", "fastapi"])
def test_output_file_gets_the_umask_permissions(obj: Path, tmp_path: Path, framework: str) -> None:
    out = tmp_path / "result.bin"
    done = _aisetl("get", f"{SERVERS}:Upper", str(obj), "-o", str(out), "--server", framework,
                   umask=0o002)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o664 and out.read_bytes() == b"HELLO"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in put.txt", "result.bin"]


def _on_a_terminal(argv: list[str]) -> tuple[int, bytes, bytes]:
    """Run ``aisetl`` with standard output on a pseudo-terminal; its code, output, errors."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aisetl", *argv], stdout=follower, stderr=subprocess.PIPE
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed (EIO)
                break
            if not chunk:
                break
            chunks.append(chunk)
        err = proc.stderr.read() if proc.stderr else b""
        return proc.wait(60), b"".join(chunks), err
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


def test_binary_is_not_written_to_a_terminal(tmp_path: Path) -> None:
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\x01\xff zip")
    code, out, err = _on_a_terminal(["get", f"{SERVERS}:Upper", str(binary), "--server", "http"])
    assert code == 2
    assert b"the result is binary (7 bytes) and standard output is a terminal" in err
    assert b"\x00" not in out
    code, out, _ = _on_a_terminal(["get", f"{SERVERS}:Upper", str(binary), "-o", "-",
                                   "--server", "http"])  # fmt: skip
    assert code == 0 and b"\x00\x01\xff ZIP" in out
    text = tmp_path / "t.txt"
    text.write_bytes(b"plain text")
    code, out, _ = _on_a_terminal(["get", f"{SERVERS}:Upper", str(text), "--server", "http"])
    assert code == 0 and b"PLAIN TEXT" in out


def test_a_timeout_names_the_limit(tmp_path: Path) -> None:
    comm = "ws"
    slow = tmp_path / "slow.txt"
    slow.write_bytes(b"slow")
    out = tmp_path / "r"
    fragile = str(Path(__file__).parent / "servers.py") + ":Fragile"
    done = _aisetl("get", fragile, str(slow), "--comm", comm, "--timeout", "1", "-o", str(out))
    assert done.returncode == 1
    assert b"timed out: exceeded --timeout 1 s" in done.stderr
    assert not out.exists()


def test_version() -> None:
    done = _aisetl("--version")
    assert done.returncode == 0
    assert done.stdout.decode().strip() == f"aisetl {aisetl.__version__}"


@pytest.mark.parametrize("framework", ["http", "flask", "fastapi"])
def test_a_server_that_dies_is_named(tmp_path: Path, framework: str) -> None:
    die = tmp_path / "die.txt"
    die.write_bytes(b"die")
    out = tmp_path / "r"
    fragile = str(Path(__file__).parent / "servers.py") + ":Fragile"
    done = _aisetl("get", fragile, str(die), "--server", framework, "-o", str(out))
    assert done.returncode == 1
    assert f"server {fragile}".encode() in done.stderr
    assert b"exited with code 3" in done.stderr and b"--- server log (tail) ---" in done.stderr
    assert not out.exists()
