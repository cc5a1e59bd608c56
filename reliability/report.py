"""The results table, and its place in docs/reliability.md (latest run, and the one before)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from .common import Row

BEGIN = "<!-- reliability:latest:begin -->"
END = "<!-- reliability:latest:end -->"
PREVIOUS_BEGIN = "<!-- reliability:previous:begin -->"
PREVIOUS_END = "<!-- reliability:previous:end -->"


def table(rows: list[Row]) -> str:
    """A Markdown table: scenario, server, what was tried, what was measured, held."""
    lines = [
        "| Scenario | Server | Tried | Measured | Held |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        measured = row.result.replace("|", "/")
        if row.problems:
            measured += "<br>" + "<br>".join(p.replace("|", "/")[:160] for p in row.problems[:3])
        lines.append(
            f"| {row.scenario} | {row.server} | {row.tried} | {measured} | "
            f"{'yes' if row.held else '**no**'} |"
        )
    return "\n".join(lines)


def _section(rows: list[Row], minutes: float) -> str:
    load = os.getloadavg()
    when = time.strftime("%Y-%m-%d %H:%M")
    return (
        f"Run of {when}, {minutes:.1f} min, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average at the end {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1 / 5 / 15 min). {sum(r.held for r in rows)} of {len(rows)} held.\n\n"
        + table(rows)
    )


def _between(text: str, begin: str, end: str) -> str | None:
    if begin not in text or end not in text:
        return None
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def _replace(text: str, begin: str, end: str, body: str) -> str:
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def write_docs(path: Path, rows: list[Row], minutes: float) -> None:
    """Put this run between the ``latest`` markers; the run that was there moves down."""
    text = path.read_text()
    latest = _between(text, BEGIN, END)
    if latest:
        text = _replace(text, PREVIOUS_BEGIN, PREVIOUS_END, latest)
    path.write_text(_replace(text, BEGIN, END, _section(rows, minutes)))
