"""``aisetl get``: one object through a real server, to stdout or a file."""

from __future__ import annotations

from pathlib import Path

import pytest

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
