"""The progress display of ``aisetl run``: plain lines for logs, a rich bar on a terminal."""

from __future__ import annotations

import io

from aisetl.cli.progress import (
    PlainDisplay,
    RichDisplay,
    eta,
    human_bytes,
    human_seconds,
    make_display,
)
from aisetl.target import JobProgress


def progress(done: int, failed: int = 0) -> JobProgress:
    return JobProgress("job", 300, done, failed, 0, done * 1024, done * 2048, 10.0)


def test_units() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(5 * 1024**3) == "5.0 GiB"
    assert human_seconds(75) == "1m15s"
    assert human_seconds(4) == "4s"
    assert human_seconds(3700) == "1h01m"
    assert eta(progress(0)) is None
    assert eta(progress(100)) == 20.0


def test_plain_lines() -> None:
    stream = io.StringIO()
    display = PlainDisplay(stream, interval=0.0)
    display.start(300)
    display.update(progress(150, failed=2))
    display.stop()
    line = stream.getvalue().strip()
    assert line == "150/300 objects (50%), 150.0 KiB read, 15.0 obj/s, ETA 10s, 2 errors"


def test_rich_bar_renders() -> None:
    stream = io.StringIO()
    display = RichDisplay(stream)
    display.start(300)
    display.update(progress(300, failed=1))
    display.stop()
    text = stream.getvalue()
    assert "300/300" in text and "1 error" in text and "obj/s" in text


def test_choice() -> None:
    assert isinstance(make_display(io.StringIO()), PlainDisplay)
    assert make_display(io.StringIO(), quiet=True) is None
