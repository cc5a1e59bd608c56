"""Tables, ratios, CSV, chart and the docs page of a benchmark run."""

from __future__ import annotations

import csv
import os
import platform
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aisetl.target.load import MIB

if TYPE_CHECKING:
    from benchmarks.run import Row

#: A cell within this fraction of the raw echo ceiling is limited by the load generator.
GENERATOR_LIMIT = 0.9
OUR_ORDER = ("ours-fastapi", "ours-flask", "ours-http")
REF_ORDER = ("ref-fastapi", "ref-flask", "ref-http")
Key = tuple[str, str, int, int, int]  # transform, mode, size, concurrency, workers


def _size(size: int) -> str:
    for unit, factor in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds < 0.1 else f"{seconds * 1000:.0f}"


def _rate(row: Row) -> str:
    r = row.result
    if not r.ok:
        return "FAIL"
    return f"{r.objects_per_s:.0f}" if r.cell.size < MIB else f"{r.mib_per_s:.0f} MiB/s"


def _metric(row: Row) -> float:
    """What a cell is judged by: objects/s below 1 MiB, MiB/s from 1 MiB up (0 on failure)."""
    r = row.result
    if not r.ok:
        return 0.0
    return r.objects_per_s if r.cell.size < MIB else r.mib_per_s


def key_of(row: Row) -> Key:
    """The cell a row belongs to (its transform, mode, size, concurrency, workers)."""
    c = row.result.cell
    return (row.transform, c.mode, c.size, c.concurrency, row.workers)


def _own_rss() -> int:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def progress_line(row: Row) -> str:
    """One line per measured cell, printed while the benchmark runs."""
    r = row.result
    c = r.cell
    status = "ok" if r.ok else f"FAIL ({r.failed} failed, {r.mismatched} wrong: {r.first_error})"
    return (
        f"{c.mode:6} {_size(c.size):>7} c{c.concurrency:<3} {r.objects_per_s:9.1f} obj/s "
        f"{r.mib_per_s:8.1f} MiB/s  p50 {_ms(r.p50):>6} ms  p99 {_ms(r.p99):>6} ms  "
        f"health p99 {_ms(r.health_p99):>5} ms  RSS {r.rss_peak / MIB:7.0f} MiB  "
        f"CPU/obj srv {r.server_cpu_per_object * 1e6:6.0f} us gen "
        f"{r.generator_cpu_per_object * 1e6:5.0f} us  other CPU {r.other_cpu_share:4.0%}  "
        f"gen RSS {_own_rss() / MIB:5.0f} MiB  {status}"
    )


def _grouped(rows: Iterable[Row]) -> dict[Key, dict[str, Row]]:
    groups: dict[Key, dict[str, Row]] = defaultdict(dict)
    for row in rows:
        groups[key_of(row)][row.server] = row
    return dict(groups)


def _ceiling(rows: Sequence[Row], key: Key) -> Row | None:
    """The raw echo server's row for the same mode, size and concurrency (echo transform)."""
    _, mode, size, conc, workers = key
    for row in rows:
        if row.server == "raw-echo" and key_of(row)[1:] == (mode, size, conc, workers):
            return row
    return None


def _best(group: dict[str, Row], names: Sequence[str]) -> Row | None:
    found = [group[n] for n in names if n in group]
    return max(found, key=_metric) if found else None


def _ratio(a: Row | None, b: Row | None) -> str:
    if a is None or b is None:
        return "—"
    if _metric(b) == 0:
        return "∞" if _metric(a) > 0 else "—"
    return f"{_metric(a) / _metric(b):.2f}x"


def ratio_lines(rows: Sequence[Row]) -> list[list[str]]:
    """Per cell: ceiling, best of ours and of the reference, their ratio, same-framework ratios."""
    table = [
        [
            "transform", "mode", "size", "conc", "workers", "ceiling", "ours best", "ref best",
            "ours/ref", "fastapi", "flask", "http", "% ceiling",
        ]
    ]  # fmt: skip
    for key, group in _grouped(rows).items():
        if set(group) <= {"raw-echo"}:
            continue
        transform, mode, size, conc, workers = key
        ours = _best(group, OUR_ORDER)
        ref = _best(group, REF_ORDER)
        ceiling = _ceiling(rows, key)
        share = "—"
        if ours is not None and ceiling is not None and _metric(ceiling) > 0:
            fraction = _metric(ours) / _metric(ceiling)
            share = f"{fraction * 100:.0f}%" + (" (gen)" if fraction >= GENERATOR_LIMIT else "")
        same = [
            _ratio(group.get(f"ours-{fw}"), group.get(f"ref-{fw}"))
            for fw in ("fastapi", "flask", "http")
        ]
        table.append(
            [
                transform, mode, _size(size), str(conc), str(workers),
                _rate(ceiling) if ceiling is not None else "—",
                f"{_rate(ours)} ({ours.framework})" if ours is not None else "—",
                f"{_rate(ref)} ({ref.framework})" if ref is not None else "—",
                _ratio(ours, ref), *same, share,
            ]
        )  # fmt: skip
    return table


def detail_lines(rows: Sequence[Row]) -> list[list[str]]:
    """Every server's numbers per cell."""
    table = [
        [
            "transform", "mode", "size", "conc", "server", "workers", "obj/s", "MiB/s",
            "p50 ms", "p99 ms", "p99/p50", "health p99 ms", "RSS idle MiB", "RSS peak MiB",
            "server CPU us/obj", "generator CPU us/obj", "other CPU", "status",
        ]
    ]  # fmt: skip
    for row in rows:
        r = row.result
        c = r.cell
        spread = f"{r.p99 / r.p50:.1f}" if r.p50 > 0 else "—"
        status = "ok" if r.ok else f"FAIL: {r.failed} failed, {r.mismatched} wrong"
        table.append(
            [
                row.transform, c.mode, _size(c.size), str(c.concurrency), row.server,
                str(row.processes or row.workers), f"{r.objects_per_s:.1f}",
                f"{r.mib_per_s:.1f}", _ms(r.p50), _ms(r.p99), spread, _ms(r.health_p99),
                f"{r.rss_idle / MIB:.0f}", f"{r.rss_peak / MIB:.0f}",
                f"{r.server_cpu_per_object * 1e6:.0f}", f"{r.generator_cpu_per_object * 1e6:.0f}",
                f"{r.other_cpu_share:.0%}", status,
            ]
        )  # fmt: skip
    return table


def _text_table(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines)


def render(rows: Sequence[Row]) -> str:
    """The two tables printed at the end of a run."""
    parts = ["", "Per server:", _text_table(detail_lines(rows))]
    ratios = ratio_lines(rows)
    if len(ratios) > 1:
        parts += [
            "",
            "Ours vs reference (objects/s below 1 MiB, MiB/s from 1 MiB; same workers; "
            "'(gen)': within 10% of the raw echo ceiling, i.e. limited by the load generator):",
            _text_table(ratios),
        ]
    return "\n".join(parts)


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    """One line per server and cell."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            [
                "server", "side", "framework", "transform", "workers", "mode", "size",
                "concurrency", "seconds", "objects", "objects_per_s", "mib_per_s", "p50_ms",
                "p99_ms", "health_p99_ms", "health_failed", "rss_idle_mib", "rss_peak_mib",
                "server_cpu_us_per_object", "generator_cpu_us_per_object", "other_cpu_share",
                "failed",
                "mismatched", "ok", "first_error",
            ]
        )  # fmt: skip
        for row in rows:
            r = row.result
            c = r.cell
            writer.writerow(
                [
                    row.server, row.side, row.framework, row.transform, row.workers, c.mode,
                    c.size, c.concurrency, f"{r.seconds:.3f}", r.count,
                    f"{r.objects_per_s:.2f}", f"{r.mib_per_s:.2f}", f"{r.p50 * 1000:.3f}",
                    f"{r.p99 * 1000:.3f}", f"{r.health_p99 * 1000:.3f}", r.health_failed,
                    f"{r.rss_idle / MIB:.1f}", f"{r.rss_peak / MIB:.1f}",
                    f"{r.server_cpu_per_object * 1e6:.1f}",
                    f"{r.generator_cpu_per_object * 1e6:.1f}", f"{r.other_cpu_share:.3f}",
                    r.failed, r.mismatched, r.ok,
                    r.first_error,
                ]
            )  # fmt: skip
    return path


def write_chart(rows: Sequence[Row], path: Path) -> Path | None:
    """Grouped bars per cell: every server's throughput relative to the best reference server."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = [(k, g) for k, g in _grouped(rows).items() if _best(g, REF_ORDER) is not None]
    if not groups:
        return None
    servers = [s for s in (*OUR_ORDER, *REF_ORDER, "raw-echo") if any(s in g for _, g in groups)]
    colors = {
        "ours-fastapi": "#1b7837", "ours-flask": "#5aae61", "ours-http": "#a6dba0",
        "ref-fastapi": "#762a83", "ref-flask": "#9970ab", "ref-http": "#c2a5cf",
        "raw-echo": "#999999",
    }  # fmt: skip
    width = 0.8 / len(servers)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(groups) + 2), 5))
    labels = []
    for index, (key, group) in enumerate(groups):
        transform, mode, size, conc, _ = key
        labels.append(f"{mode}\n{_size(size)} c{conc}\n{transform}")
        best_ref = _best(group, REF_ORDER)
        assert best_ref is not None
        base = _metric(best_ref) or 1.0
        ceiling = _ceiling(rows, key)
        for position, server in enumerate(servers):
            row = ceiling if server == "raw-echo" else group.get(server)
            if row is None:
                continue
            ax.bar(
                index + (position - len(servers) / 2 + 0.5) * width,
                _metric(row) / base,
                width,
                color=colors[server],
                label=server
                if index == 0 or server not in ax.get_legend_handles_labels()[1]
                else None,
            )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("throughput / best reference server")
    ax.set_title(f"aisetl vs aistore[etl] 2.0.0 — {machine_summary()}", fontsize=9)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine_summary() -> str:
    """CPU model, cores, memory, OS and Python of this machine, in one line."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with open("/proc/meminfo") as file:
        for line in file:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    return (
        f"{model}, {os.cpu_count()} cores, {memory / 1024**3:.0f} GiB RAM, Linux "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def write_docs(rows: Sequence[Row], command: str, elapsed: float, docs: Path, preset: str) -> Path:
    """Replace this preset's section of ``docs/performance.md`` (other text is kept)."""
    page = docs / "performance.md"
    begin, end = f"<!-- bench:{preset} -->", f"<!-- /bench:{preset} -->"
    chart = docs / f"performance-{preset}.png"
    drawn = write_chart(rows, chart)
    section = [
        begin,
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_summary()}; {len(rows)} cells in "
        f"{elapsed:.0f} s. Command (from the repository root, after `make bench` built the "
        f"virtual environments):",
        "",
        "```",
        f"AISETL_REFERENCE_PYTHON=.venv-ref/bin/python .venv/bin/{command}",
        "```",
        "",
    ]
    ratios = ratio_lines(rows)
    if len(ratios) > 1:
        section += [_markdown_table(ratios), ""]
    if drawn is not None:
        section += [f"![{preset} chart]({chart.name})", ""]
    section += [
        "<details><summary>Every server, every cell</summary>",
        "",
        _markdown_table(detail_lines(rows)),
        "",
        "</details>",
        end,
    ]
    text = page.read_text() if page.exists() else "# Performance\n"
    block = "\n".join(section)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + f"\n\n## {preset}\n\n{block}\n"
    page.write_text(text)
    return page
