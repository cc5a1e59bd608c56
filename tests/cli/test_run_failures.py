"""``aisetl run`` never hides a failure: collisions, permissions, Ctrl-C, dead servers, timeouts.

Each case runs the real ``aisetl`` command (a child process) against real servers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..servers.conftest import REPO

FRAGILE = str(Path(__file__).parent / "servers.py") + ":Fragile"
SLEEPER = str(Path(__file__).parent / "servers.py") + ":Sleeper"
FRAMEWORKS = ["http", "flask", "fastapi"]


def aisetl(*argv: str, umask: int = 0o022, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run the ``aisetl`` command; its output, exit code and all."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "aisetl", *argv],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, umask=umask,
    )  # fmt: skip


def files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` by relative name."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def make(folder: Path, objects: dict[str, bytes]) -> Path:
    for name, data in objects.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


# --- destination names that collide ----------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_colliding_destination_names_are_refused_before_the_run(
    tmp_path: Path, framework: str
) -> None:
    src = make(tmp_path / "src", {"x.jpg": b"j", "x.png": b"p", "y.jpg": b"y", "d/z.jpg": b"z"})
    dst = tmp_path / "out"
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(dst), "--ext", "jpg:png",
                  "--server", framework, "-q")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "x.png <- x.jpg, x.png" in done.stderr
    assert "y.png" not in done.stderr  # only the names that collide are listed
    assert not dst.exists()


def test_a_name_that_is_also_a_folder_collides(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"a.txt": b"1", "a.csv/b": b"2"})
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(tmp_path / "o"),
                  "--ext", "txt:csv", "-q")  # fmt: skip
    assert done.returncode == 2
    assert "a.csv <- a.csv/b, a.txt" in done.stderr


def test_star_extension_renames_every_object(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"a.jpg": b"a", "b.gif": b"b", "README": b"r", "s/c.tif": b"c"})
    dst = tmp_path / "out"
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(dst), "--ext", "*:png",
                  "--server", "http", "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert files(dst) == {"a.png": b"A", "b.png": b"B", "README.png": b"R", "s/c.png": b"C"}
    collide = make(tmp_path / "src2", {"a.jpg": b"a", "a.gif": b"b"})
    done = aisetl("run", FRAGILE, "--src", str(collide), "--dst", str(tmp_path / "o2"),
                  "--ext", "*:png", "-q")  # fmt: skip
    assert done.returncode == 2 and "a.png <- a.gif, a.jpg" in done.stderr


def test_a_star_pattern_other_than_star_alone_is_a_clear_error(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"a.jpg": b"a"})
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(tmp_path / "o"),
                  "--ext", "j*:png", "-q")  # fmt: skip
    assert done.returncode == 2
    assert "'*' stands alone for any extension, as in '*:png'" in done.stderr


# --- permissions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framework", "extra"),
    [("http", []), ("flask", ["--direct-put"]), ("fastapi", ["--comm", "ws"])],
)
def test_results_and_report_get_the_umask_permissions(
    tmp_path: Path, framework: str, extra: list[str]
) -> None:
    src = make(tmp_path / "src", {"a.txt": b"a", "d/b.txt": b"b"})
    dst, report = tmp_path / "out", tmp_path / "report.json"
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(dst), "--report", str(report),
                  "--server", framework, "-q", *extra, umask=0o002)  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = [dst / "a.txt", dst / "d" / "b.txt", report]
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o664}
    assert files(dst) == {"a.txt": b"A", "d/b.txt": b"B"}  # no temp file left
    if framework == "http":  # another umask, other permissions
        done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(tmp_path / "o2"),
                      "--server", framework, "-q", *extra, umask=0o027)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE((tmp_path / "o2" / "a.txt").stat().st_mode) == 0o640


# --- Ctrl-C ---------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_report_is_written_after_ctrl_c(tmp_path: Path, framework: str) -> None:
    src = make(tmp_path / "src", {f"o{i:02d}.txt": b"x" for i in range(20)})
    dst, report = tmp_path / "out", tmp_path / "r.json"
    argv = [sys.executable, "-m", "aisetl", "run", SLEEPER, "--src", str(src), "--dst", str(dst),
            "--concurrency", "1", "--server", framework, "--report", str(report)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(400):  # up to 20 s
            if dst.is_dir() and len(files(dst)) >= 2:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, err
    data = json.loads(report.read_text())
    assert data["aborted"] and data["interrupted"]
    assert data["abort_reason"] == "interrupted (Ctrl-C)"
    assert data["stored"] == len(files(dst)) and 2 <= data["stored"] < 20
    assert data["failed"] == 0 and data["total"] == 20
    assert "letting the objects in flight finish" in err and "--skip-existing" in err
    assert "job stopped: interrupted (Ctrl-C)" in out


# --- servers that die -----------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("concurrency", ["1", "16"])
def test_a_server_that_dies_is_named_at_once(
    tmp_path: Path, framework: str, concurrency: str
) -> None:
    objects = {f"o{i:02d}.txt": b"fine" for i in range(30)}
    src = make(tmp_path / "src", {**objects, "a-die.txt": b"die now"})
    report = tmp_path / "r.json"
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(tmp_path / "out"),
                  "--server", framework, "--concurrency", concurrency, "--report", str(report),
                  "-q", timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"server {FRAGILE}" in done.stderr and "exited with code 3" in done.stderr
    assert "--- server log (tail) ---" in done.stderr
    data = json.loads(report.read_text())
    assert "exited with code 3" in data["server_died"]


def test_a_worker_that_dies_is_named(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"a.txt": b"die", **{f"o{i}.txt": b"fine" for i in range(8)}})
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(tmp_path / "out"),
                  "--server", "http", "--workers", "2", "--concurrency", "1", "-q",
                  timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert re.search(r"its worker process \d+ exited with code 3", done.stderr), done.stderr


def test_a_killed_server_names_the_signal(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"a.txt": b"kill it", "b.txt": b"fine"})
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(tmp_path / "out"),
                  "--server", "fastapi", "--concurrency", "1", "-q", timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "was killed by SIGKILL (out of memory?)" in done.stderr


def test_the_failing_stage_of_a_pipeline_is_named(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {f"o{i}.txt": b"die" for i in range(4)})
    echo = str(REPO / "examples" / "echo_http" / "server.py")
    done = aisetl("run", echo, "--then", FRAGILE, "--src", str(src), "--dst",
                  str(tmp_path / "out"), "--no-spec", "-q", timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"server {FRAGILE} (stage 2 of 2) exited with code 3" in done.stderr


# --- what each failure says -----------------------------------------------------------------


def test_identical_errors_are_grouped_with_a_traceback_tail_and_logs_kept(tmp_path: Path) -> None:
    src = make(
        tmp_path / "src",
        {"b1.txt": b"boom", "b2.txt": b"boom", "b3.txt": b"boom", "c.txt": b"oops", "ok": b"ok"},
    )
    report, logs = tmp_path / "r.json", tmp_path / "logs"
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(tmp_path / "out"),
                  "--report", str(report), "--log", str(logs), "-q")  # fmt: skip
    assert done.returncode == 1
    out = done.stdout
    assert "4 failed objects, 2 distinct errors:" in out
    assert "3 x ETL error: Transform failed: RuntimeError: exploded" in out
    assert "b1.txt, b2.txt, b3.txt" in out
    assert 'raise RuntimeError("exploded")' in out and 'raise KeyError("no such column")' in out
    assert (
        "c.txt: ETL error: Transform failed: KeyError: 'no such column' (object: src/c.txt)" in out
    )
    groups = json.loads(report.read_text())["error_groups"]
    assert [(g["count"], sorted(g["objects"])) for g in groups] == [
        (3, ["b1.txt", "b2.txt", "b3.txt"]),
        (1, ["c.txt"]),
    ]
    assert groups[0]["traceback"].endswith("RuntimeError: exploded")
    kept = logs / "fragile.log"
    assert f"server logs: {kept}" in out
    assert "hpush src/b1.txt failed (500)" in kept.read_text()


def test_a_timeout_names_the_limit_it_hit_and_applies_to_ws(tmp_path: Path) -> None:
    comm = "ws"
    src = make(tmp_path / "src", {"a.txt": b"slow", "b.txt": b"quick"})
    report = tmp_path / "r.json"
    done = aisetl("run", FRAGILE, "--src", str(src), "--dst", str(tmp_path / "out"),
                  "--comm", comm, "--obj-timeout", "1", "--report", str(report), "-q",
                  timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "timed out: exceeded --obj-timeout 1 s" in done.stdout
    reasons = {e["object"]: e["reason"] for e in json.loads(report.read_text())["errors"]}
    assert reasons["a.txt"].startswith("timed out: exceeded --obj-timeout 1 s (")


def test_a_timeout_from_the_spec_says_where_to_raise_it(tmp_path: Path) -> None:
    folder = tmp_path / "etl"
    folder.mkdir()
    (folder / "server.py").write_text((Path(__file__).parent / "servers.py").read_text())
    (folder / "etl_spec.yaml").write_text(
        "name: fragile-etl\nruntime: {image: x}\ncommunication: hpush://\nobj_timeout: 1s\n"
    )
    src = make(tmp_path / "src", {"a.txt": b"slow"})
    done = aisetl("run", f"{folder / 'server.py'}:Fragile", "--src", str(src), "--dst",
                  str(tmp_path / "out"), "-q", timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert (
        "a.txt: timed out: exceeded obj_timeout 1 s of the server's etl_spec.yaml "
        "(raise it there or pass --obj-timeout)"
    ) in done.stdout


def test_ctrl_c_while_the_servers_start_still_writes_the_report(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"a.txt": b"a"})
    report = tmp_path / "r.json"
    sleepy = str(REPO / "tests" / "testing" / "servers.py") + ":Sleepy"
    argv = [sys.executable, "-m", "aisetl", "run", sleepy, "--src", str(src), "--dst",
            str(tmp_path / "out"), "--server", "http", "--report", str(report)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        header = proc.stderr.readline()  # printed just before the servers start
        assert header.startswith("aisetl run:"), header
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, err
    assert "interrupted before the servers were ready" in err
    data = json.loads(report.read_text())
    assert data["aborted"] and data["interrupted"] and data["total"] == 1
    assert data["abort_reason"] == "interrupted (Ctrl-C) before the servers were ready"
