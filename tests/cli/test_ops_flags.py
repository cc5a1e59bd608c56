"""``aisetl run --metrics`` / ``aisetl bench --metrics``, and ``--obj-timeout`` for the server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aisetl.cli import main

SERVERS = str(Path(__file__).parent.parent / "testing" / "servers.py")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(6):
        (folder / f"obj {i}.txt").write_bytes(f"object #{i}\n".encode())
    (folder / "bad.txt").write_bytes(b"bad data")
    return folder


@pytest.mark.parametrize("framework", ["http", "flask", "fastapi"])
def test_run_shows_the_servers_own_counts(
    src: Path, tmp_path: Path, framework: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f"{SERVERS}:Upper", "--server", framework, "--src", str(src)]
    code = main(["run", *argv, "--dst", str(tmp_path / "out"), "--metrics", "--workers", "2", "-q"])
    out = capsys.readouterr().out
    assert code == 1  # bad.txt fails
    assert re.search(r"server metrics of \S+ \(GET http://127\.0\.0\.1:\d+/metrics\):", out), out
    assert "objects: 7 (hpush failed 415: 1, hpush ok 200: 6)" in out
    assert re.search(r"processes: 3, CPU [\d.]+ s", out), out


def test_run_without_metrics_says_why(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f"{SERVERS}:Upper", "--server", "http", "--src", str(src), "--dst", str(tmp_path / "o")]
    code = main(["run", *argv, "--metrics", "--env", "AISETL_METRICS=false", "-q"])
    out = capsys.readouterr().out
    assert code == 1
    assert "none: 404 Metrics are off (AISETL_METRICS=false)" in out


def test_run_obj_timeout_is_the_servers_deadline_too(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Env transformer answers with the variable named by --args."""
    dst = tmp_path / "out"
    argv = [f"{SERVERS}:Env", "--server", "http", "--src", str(src), "--dst", str(dst)]
    code = main(["run", *argv, "--args", "AISETL_OBJ_TIMEOUT", "--obj-timeout", "7.5", "-q"])
    assert code == 0, capsys.readouterr()
    assert (dst / "obj 0.txt").read_bytes() == b"7.5"
    # --env wins over --obj-timeout
    code = main(
        ["run", *argv, "--args", "AISETL_OBJ_TIMEOUT", "--obj-timeout", "7.5", "-q",
         "--env", "AISETL_OBJ_TIMEOUT=30"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    assert (dst / "obj 0.txt").read_bytes() == b"30"


def test_bench_shows_the_servers_own_counts(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [f"{SERVERS}:Upper", "--server", "fastapi", "--size", "100", "--no-spec"]
    fast = ["--duration", "0.3", "--warmup", "0", "--concurrency", "2"]
    code = main(["bench", *argv, *fast, "--metrics"])
    out = capsys.readouterr().out
    assert code == 0, out
    objects = int(re.search(r"objects: (\d+) \(hpush ok 200: \1\)", out).group(1))  # type: ignore[union-attr]
    assert objects > 0
