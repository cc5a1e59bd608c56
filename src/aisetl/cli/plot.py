"""``aisetl bench --plot``: the benchmark's chart, grouped bars per mode and size."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisetl.cli.errors import CommandError

if TYPE_CHECKING:
    from aisetl.target.load import CellResult

MIB = 1024 * 1024
#: Bar colours by concurrency, darkest for the first (the palette of ``make bench``'s chart).
COLOURS = ("#1b7837", "#5aae61", "#a6dba0", "#762a83", "#9970ab", "#c2a5cf", "#999999")


def _size(size: int) -> str:
    for unit, factor in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B" if size else "files"


def pyplot() -> Any:
    """matplotlib's pyplot drawing to files, or a :class:`CommandError` naming the install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("--plot needs matplotlib: pip install 'aisetl[bench]'") from None
    return plt


def machine() -> str:
    """Cores and Python of this machine, for the title."""
    return f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python " + (
        platform.python_version()
    )


def write_chart(results: Sequence[CellResult], path: Path, title: str) -> None:
    """Throughput (objects/s, and MiB/s) and peak RSS of every cell, grouped by mode and size."""
    plt = pyplot()
    groups: dict[tuple[str, int], list[CellResult]] = {}
    for result in results:
        groups.setdefault((result.cell.mode, result.cell.size), []).append(result)
    concurrencies = sorted({r.cell.concurrency for r in results})
    width = 0.8 / max(len(concurrencies), 1)
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, 1.2 * len(groups) + 2), 9), sharex=True)
    panels: list[tuple[str, Callable[[CellResult], float]]] = [
        ("objects/s", lambda r: r.objects_per_s),
        ("MiB/s", lambda r: r.mib_per_s),
        ("peak RSS (MiB)", lambda r: r.rss_peak / MIB),
    ]
    for ax, (label, value) in zip(axes, panels, strict=True):
        for index, cells in enumerate(groups.values()):
            for result in cells:
                position = concurrencies.index(result.cell.concurrency)
                ax.bar(
                    index + (position - len(concurrencies) / 2 + 0.5) * width,
                    value(result) if result.ok else 0.0,
                    width,
                    color=COLOURS[position % len(COLOURS)],
                    hatch="" if result.ok else "xx",
                    label=f"c{result.cell.concurrency}" if index == 0 else None,
                )
        ax.set_ylabel(label)
    axes[-1].set_xticks(range(len(groups)))
    axes[-1].set_xticklabels([f"{mode}\n{_size(size)}" for mode, size in groups], fontsize=8)
    handles, names = axes[0].get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    axes[0].legend(unique.values(), unique.keys(), fontsize=7, ncol=len(unique), title="in flight")
    axes[0].set_title(f"{title}\n{machine()}", fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise CommandError(f"--plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
