"""Live progress of an ``aisetl run`` job: a bar on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Protocol

from aisetl.target.jobs import JobProgress

#: Seconds between two plain progress lines (when the output is not a terminal).
PLAIN_INTERVAL = 5.0


def human_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - loop always returns


def human_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``."""
    whole = max(0, round(seconds))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def eta(progress: JobProgress) -> float | None:
    """Seconds left at the current rate, or ``None`` before the first object."""
    if progress.done <= 0 or progress.elapsed <= 0:
        return None
    rate = progress.done / progress.elapsed
    return max(progress.total - progress.done, 0) / rate


class Display(Protocol):
    """Shows a job's progress."""

    def start(self, total: int) -> None:
        """The job starts with ``total`` objects."""

    def update(self, progress: JobProgress) -> None:
        """New counts arrived (called from the job's event loop)."""

    def stop(self) -> None:
        """The job ended (normally or not)."""


class PlainDisplay:
    """One line every :data:`PLAIN_INTERVAL` seconds, for logs and pipes."""

    def __init__(self, stream: IO[str], interval: float = PLAIN_INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self._last = 0.0
        self._latest: JobProgress | None = None

    def start(self, total: int) -> None:
        """Note the start."""
        self._last = time.monotonic()

    def update(self, progress: JobProgress) -> None:
        """Print a line when the interval has passed."""
        self._latest = progress
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.stream.write(self.line(progress) + "\n")
            self.stream.flush()

    def stop(self) -> None:
        """Nothing to tear down; the summary follows."""

    @staticmethod
    def line(progress: JobProgress) -> str:
        """``120/300 objects (40%), 12.3 MiB, 45.1 obj/s, ETA 4s, 0 errors``."""
        rate = progress.done / progress.elapsed if progress.elapsed > 0 else 0.0
        pct = 100 * progress.done / progress.total if progress.total else 100.0
        left = eta(progress)
        return (
            f"{progress.done}/{progress.total} objects ({pct:.0f}%), "
            f"{human_bytes(progress.bytes_in)} read, {rate:.1f} obj/s, "
            f"ETA {human_seconds(left) if left is not None else '?'}, "
            f"{progress.failed} error{'s' if progress.failed != 1 else ''}"
        )


class RichDisplay:
    """A live bar (objects, bytes, rate, ETA, errors) drawn with ``rich``."""

    def __init__(self, stream: IO[str], label: str = "transform") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[bytes]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[errors]}"),
            console=Console(file=stream),
            transient=False,
            refresh_per_second=8,
        )
        self._label = label
        self._task: Any = None

    def start(self, total: int) -> None:
        """Show the bar."""
        self._progress.start()
        self._task = self._progress.add_task(
            self._label, total=total, bytes="0 B", rate="", errors="[green]0 errors"
        )

    def update(self, progress: JobProgress) -> None:
        """Advance the bar."""
        rate = progress.done / progress.elapsed if progress.elapsed > 0 else 0.0
        brate = progress.bytes_in / progress.elapsed if progress.elapsed > 0 else 0.0
        colour = "red" if progress.failed else "green"
        self._progress.update(
            self._task,
            completed=progress.done,
            total=progress.total,
            bytes=human_bytes(progress.bytes_in),
            rate=f"{rate:.1f} obj/s {human_bytes(brate)}/s",
            errors=f"[{colour}]{progress.failed} error{'s' if progress.failed != 1 else ''}",
        )

    def stop(self) -> None:
        """Leave the final bar on screen."""
        self._progress.stop()


def make_display(stream: IO[str] | None = None, *, quiet: bool = False) -> Display | None:
    """The display that fits ``stream`` (default stderr): rich on a terminal, plain lines else."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return None
    if stream.isatty():
        return RichDisplay(stream)
    return PlainDisplay(stream)
