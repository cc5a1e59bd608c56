"""``aisetl bench``: every mode through a real server, answers checked, bad input refused.

Durations are tiny: these tests check that the measurement runs and judges answers, never how
fast anything is.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from aisetl.cli import main

REPO = Path(__file__).resolve().parents[2]
ECHO_FASTAPI = str(REPO / "examples" / "echo_fastapi" / "server.py")
ECHO_HTTP = str(REPO / "examples" / "echo_http" / "server.py")
UPPER = str(REPO / "tests" / "testing" / "servers.py") + ":Upper"
FAST = ["--duration", "0.3", "--warmup", "0", "--concurrency", "4", "--no-spec"]


def test_every_mode_answers_and_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "bench.csv"
    argv = [ECHO_FASTAPI, "--comm", "hpush", "fqn", "hpull", "ws", "direct"]
    code = main(["bench", *argv, "--size", "1KiB", "64KiB", "--echo", "--csv", str(report), *FAST])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert len(lines) == 10 and all(line.endswith("ok") for line in lines)
    rows = list(csv.DictReader(report.open()))
    assert {(r["mode"], r["size"]) for r in rows} == {
        (mode, size)
        for mode in ("hpush", "fqn", "hpull", "ws", "direct")
        for size in ("1024", "65536")
    }
    for row in rows:
        assert int(row["objects"]) > 0 and row["ok"] == "True"
        assert float(row["p50_ms"]) > 0 and int(row["rss_peak"]) > 0


def test_wrong_answers_fail_the_cell(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", UPPER, "--server", "http", "--size", "100", "--echo", *FAST])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out and "wrong answers" in out


def test_consistent_transform_passes_without_echo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"f{i}.txt").write_bytes(b"x" * (i + 1) * 100)
    code = main(
        ["bench", UPPER, "--server", "flask", "--data", str(data), "--comm", "direct", *FAST]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "files" in out and out.strip().endswith("ok")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([ECHO_HTTP, "--comm", "ws"], "cannot serve ws (it serves hpush, hpull)"),
        ([ECHO_HTTP, "--size", "lots"], "is not a size"),
        ([ECHO_HTTP, "--workers", "0"], "--workers must be at least 1"),
        ([str(REPO / "no-such.py")], "no-such.py"),
    ],
)
def test_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *argv, *FAST]) == 2
    assert message in capsys.readouterr().err


def test_rss_of_each_cell_and_the_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, chart = tmp_path / "bench.csv", tmp_path / "chart.png"
    argv = [ECHO_FASTAPI, "--comm", "hpush", "fqn", "--size", "4MiB", "1KiB", "--echo"]
    timing = ["--duration", "1", "--warmup", "0", "--concurrency", "4", "--no-spec"]
    code = main(["bench", *argv, "--csv", str(report), "--plot", str(chart), *timing])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert len(lines) == 4 and all(" -> peak " in line and "(+" in line for line in lines)
    rows = {(r["mode"], r["size"]): r for r in csv.DictReader(report.open())}
    for row in rows.values():
        assert int(row["rss_peak"]) > 0 and int(row["rss_idle"]) > 0
    # The high-water mark is reset per cell: 1 KiB objects add far less than 4 MiB ones did.
    grew = {key: int(r["rss_peak"]) - int(r["rss_idle"]) for key, r in rows.items()}
    assert grew[("hpush", "1024")] < grew[("hpush", "4194304")]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


def test_plot_into_a_missing_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [ECHO_HTTP, "--plot", str(tmp_path / "no" / "c.png"), *FAST]
    assert main(["bench", *argv]) == 2
    assert "--plot" in capsys.readouterr().err


def test_a_batching_server_reports_its_batches(capsys: pytest.CaptureFixture[str]) -> None:
    server = str(REPO / "tests" / "transformers.py") + ":BatchPlainUpper"
    argv = [server, "--comm", "hpush", "ws", "--size", "1KiB", "--duration", "0.5"]
    code = main(["bench", *argv, "--warmup", "0", "--concurrency", "8", "--no-spec"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["hpush", "batches:", "ws", "batches:"]
    for summary in lines[1::2]:
        count, mean = summary.split()[1].rstrip(","), float(summary.split()[4])
        assert int(count) > 0 and 1 <= mean <= 8  # never more than the objects in flight
