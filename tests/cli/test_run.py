"""``aisetl run``: folder-to-folder jobs through real servers, and every bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aisetl.cli import main

SERVERS = str(Path(__file__).parent.parent / "testing" / "servers.py")
UPPER = f"{SERVERS}:Upper"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` by relative name (hidden temp files included)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def digest(folder: Path) -> str:
    return hashlib.sha256(repr(sorted(tree(folder).items())).encode()).hexdigest()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    for i in range(12):
        (folder / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (folder / f"d{i % 3}" / f"obj {i}.txt").write_bytes(f"object #{i}\n".encode())
    (folder / "top.flac").write_bytes(b"flac-ish")
    return folder


@pytest.fixture
def with_bad(src: Path) -> Path:
    (src / "d1" / "bad.txt").write_bytes(b"bad data")
    return src


def run(*argv: str) -> int:
    return main(["run", *argv, "--quiet"])


@pytest.mark.parametrize(
    ("comm", "extra"),
    [
        ("hpush", []),
        ("hpull", ["--fqn"]),
        ("ws", ["--fqn", "--env", "ETL_DIRECT_FQN=false"]),
    ],
)
def test_every_object_lands_in_dst(
    src: Path, tmp_path: Path, comm: str, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(src)
    dst = tmp_path / "out"
    report = tmp_path / "report.json"
    code = run(
        UPPER, "--src", str(src), "--dst", str(dst), "--comm", comm, "--report", str(report), *extra
    )
    assert code == 0, capsys.readouterr()
    result = tree(dst)
    assert len(result) == 13
    assert result["d1/obj 4.txt"] == b"OBJECT #4\n"
    assert digest(src) == before
    data = json.loads(report.read_text())
    assert data["ok"] and data["total"] == 13 and data["stored"] == 13 and data["errors"] == []
    assert data["comm"] == comm
    assert "done: 13/13 objects" in capsys.readouterr().out


def test_failures_are_reported_and_nothing_partial_lands(
    with_bad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst, report = tmp_path / "out", tmp_path / "r.json"
    assert run(UPPER, "--src", str(with_bad), "--dst", str(dst), "--report", str(report)) == 1
    out = capsys.readouterr().out
    assert "FAILED: 14/14 objects" in out and "d1/bad.txt: ETL error: cannot take" in out
    data = json.loads(report.read_text())
    assert not data["ok"] and data["failed"] == 1
    assert data["errors"] == [
        {"object": "d1/bad.txt", "status": 415, "reason": data["errors"][0]["reason"]}
    ]
    assert "cannot take src/d1/bad.txt" in data["errors"][0]["reason"]
    assert sorted(tree(dst)) == sorted(n for n in tree(with_bad) if n != "d1/bad.txt")


def test_ws_failure_is_found_at_the_destination(
    with_bad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "out"
    assert run(UPPER, "--src", str(with_bad), "--dst", str(dst), "--comm", "ws") == 1
    out = capsys.readouterr().out
    assert "d1/bad.txt: over ws a failure cannot be reported to the target" in out
    assert "stored empty or skipped; the server answered: cannot take d1/bad.txt" in out
    assert not (dst / "d1" / "bad.txt").exists()


def test_direct_put_pipeline_args_ext_prefix(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "out"
    report = tmp_path / "r.json"
    code = run(
        UPPER,
        "--src",
        str(src),
        "--dst",
        str(dst),
        "--direct-put",
        "--then",
        UPPER,
        "--args",
        "+",
        "--ext",
        "txt:TXT",
        "--prefix",
        "d2/",
        "--server",
        "http",
        "--report",
        str(report),
    )
    assert code == 0, capsys.readouterr()
    result = tree(dst)
    assert sorted(result) == ["d2/obj 11.TXT", "d2/obj 2.TXT", "d2/obj 5.TXT", "d2/obj 8.TXT"]
    assert result["d2/obj 2.TXT"] == b"OBJECT #2\n++"  # two stages, each appends etl_args
    data = json.loads(report.read_text())
    assert data["delivered"] == 4 and data["total"] == 4


def test_skip_existing_resumes(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    (dst / "d0").mkdir(parents=True)
    (dst / "d0" / "obj 0.txt").write_bytes(b"kept")
    report = tmp_path / "r.json"
    assert (
        run(UPPER, "--src", str(src), "--dst", str(dst), "--skip-existing", "--report", str(report))
        == 0
    )
    assert (dst / "d0" / "obj 0.txt").read_bytes() == b"kept"
    assert (dst / "d0" / "obj 3.txt").read_bytes() == b"OBJECT #3\n"
    assert json.loads(report.read_text())["skipped"] == 1


def test_spec_beside_server_supplies_comm_and_env(
    tmp_path: Path, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "etl"
    folder.mkdir()
    (folder / "server.py").write_text(Path(SERVERS).read_text())
    (folder / "etl_spec.yaml").write_text(
        "name: env-etl\nruntime:\n  image: x\n  env:\n  - {name: COLOUR, value: teal}\n"
        "communication: ws://\nsupport_direct_put: true\n"
    )
    dst = tmp_path / "out"
    assert (
        run(f"{folder / 'server.py'}:Env", "--src", str(src), "--dst", str(dst), "--args", "COLOUR")
        == 0
    )
    assert set(tree(dst).values()) == {b"teal"}
    (folder / "etl_spec.yaml").write_text("name: env-etl\nruntime: {image: x}\ncommunication: ws\n")
    assert run(f"{folder / 'server.py'}:Env", "--src", str(src), "--dst", str(dst)) == 2
    err = capsys.readouterr().err
    assert "invalid spec" in err and "communication: unknown comm-type 'ws'" in err
    assert (
        run(f"{folder / 'server.py'}:Env", "--src", str(src), "--dst", str(dst), "--no-spec") == 0
    )


def bad_inputs(tmp: Path, src: Path, port: int) -> list[tuple[list[str], str]]:
    empty = tmp / "empty"
    empty.mkdir()
    (tmp / "noclass.py").write_text("x = 1\n")
    (tmp / "broken.py").write_text("import no_such_module_here\n")
    dst = str(tmp / "out")
    s = ["--src", str(src), "--dst", dst]
    return [
        ([str(tmp / "noclass.py"), *s], "defines no server class"),
        ([str(tmp / "broken.py"), *s], "No module named 'no_such_module_here'"),
        (["no_such_pkg.mod:Cls", *s], "no module named"),
        ([f"{SERVERS}:Nope", *s], "has no attribute 'Nope'"),
        ([str(tmp / "missing.py"), *s], "no such file"),
        ([UPPER, "--src", str(tmp / "nope"), "--dst", dst], "no such folder"),
        ([UPPER, "--src", str(empty), "--dst", dst], "is empty"),
        ([UPPER, *s, "--prefix", "zzz"], "no objects whose name starts with 'zzz'"),
        ([UPPER, "--src", str(src), "--dst", str(src / "d0" / "out")], "is inside --src"),
        ([UPPER, "--src", str(src), "--dst", str(src)], "is inside --src"),
        ([UPPER, "--src", str(src / "d0"), "--dst", str(src)], "is inside --dst"),
        ([UPPER, *s, "--port", str(port)], f"port {port} is in use"),
        ([UPPER, *s, "--workers", "0"], "--workers must be at least 1"),
        ([UPPER, *s, "--concurrency", "0"], "--concurrency must be at least 1"),
        ([UPPER, *s, "--ext", "flac"], "write FROM:TO"),
        ([UPPER, *s, "--env", "X"], "write NAME=VALUE"),
        (
            [UPPER, *s, "--comm", "ws", "--server", "flask"],
            "cannot serve ws (it serves hpush, hpull)",
        ),
        ([UPPER, *s, "--spec", str(tmp / "none.yaml")], "cannot read"),
        ([UPPER, *s, "--report", str(tmp / "no" / "r.json")], "does not exist"),
        ([f"{SERVERS}:Crash", *s, "--server", "http"], "model file missing"),
        (  # long enough for the server to print before it sleeps, on a loaded machine too
            [f"{SERVERS}:Sleepy", *s, "--server", "http", "--init-timeout", "8"],
            "loading a very large model",
        ),
    ]


def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, src: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(src)
    for argv, message in bad_inputs(tmp_path, src, busy_port):
        assert run(*argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
        assert err.count("aisetl run: error:") == 1
        assert not (tmp_path / "out").exists(), argv
    assert digest(src) == before


def test_never_healthy_names_the_wait(
    tmp_path: Path, src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(
            f"{SERVERS}:Sleepy",
            "--src",
            str(src),
            "--dst",
            str(tmp_path / "o"),
            "--server",
            "http",
            "--init-timeout",
            "1",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "did not become healthy" in err and "server log" in err


def test_command_line_exit_codes(with_bad: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "aisetl", "run", UPPER, "--src", str(with_bad)]
    failed = subprocess.run(
        [*argv, "--dst", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120
    )
    assert failed.returncode == 1, failed.stderr
    assert "aisetl run:" in failed.stderr  # header and progress go to stderr
    bad = subprocess.run(
        [*argv, "--dst", str(with_bad / "x")], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("aisetl run: error: --dst")


@pytest.mark.parametrize("verb", ["serve", "run", "get", "new", "spec"])
def test_help_has_exit_codes(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([verb, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: aisetl {verb}" in out
    if verb != "serve":
        assert "exit codes:" in out


def test_interrupted_run_resumes_with_skip_existing(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    argv = [
        sys.executable,
        "-m",
        "aisetl",
        "run",
        f"{SERVERS}:Slow",
        "--src",
        str(src),
        "--dst",
        str(dst),
        "--concurrency",
        "1",
        "--server",
        "http",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(400):  # up to 20 s
            if dst.is_dir() and len(tree(dst)) >= 2:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, err
    assert "--skip-existing to resume" in err
    partial = tree(dst)
    assert 2 <= len(partial) < 13
    assert all(not name.rsplit("/", 1)[-1].startswith(".~") for name in partial)
    assert all(data == tree(src)[name].upper() for name, data in partial.items())
    report = tmp_path / "r.json"
    assert (
        run(UPPER, "--src", str(src), "--dst", str(dst), "--skip-existing", "--report", str(report))
        == 0
    )
    assert json.loads(report.read_text())["skipped"] == len(partial)
    assert len(tree(dst)) == 13
