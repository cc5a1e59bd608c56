"""The CLI over ws tells what a cluster would do: a failing object is reported, never hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisetl.cli import main

SERVERS = str(Path(__file__).parent.parent / "testing" / "servers.py")
LOST = "in a cluster this object would be stored empty or skipped"


def test_get_over_ws_fails_loudly_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"bad input")
    out = tmp_path / "result.bin"
    code = main(["get", f"{SERVERS}:Upper", str(bad), "--comm", "ws", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert LOST in err and "cannot take bad.txt" in err  # the consequence and the reason
    assert not out.exists()


def test_run_over_ws_warns_and_reports_exactly_the_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name, data in {"a.txt": b"fine", "b.txt": b"bad one", "c.txt": b"also fine"}.items():
        (src / name).write_bytes(data)
    code = main(["run", f"{SERVERS}:Upper", "--src", str(src), "--dst", str(dst), "--comm", "ws"])
    captured = capsys.readouterr()
    assert code == 1
    assert "over ws a failing object is lost silently in a cluster" in captured.err
    assert "use hpush or hpull" in captured.err
    assert "2 written" in captured.out and "1 failed" in captured.out
    assert f"b.txt: over ws a failure cannot be reported to the target: {LOST}" in captured.out
    assert sorted(p.name for p in dst.iterdir()) == ["a.txt", "c.txt"]


def test_spec_check_warns_about_ws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "etl_spec.yaml"
    spec.write_text(
        "name: ws-etl\ncommunication: ws://\nsupport_direct_put: true\n"
        "runtime:\n  image: example/ws-etl:1\n"
    )
    assert main(["spec", "check", str(spec)]) == 0
    assert "lost silently in a cluster" in capsys.readouterr().err
