"""``make reliability``: every scenario against every server under ``aisetl serve``.

``python -m reliability.run [--servers http,flask,fastapi] [--only fuzz,soak] [--docs]``
prints one table row per scenario and server, writes ``--docs`` into docs/reliability.md
(the previous run is kept beside it) and exits 1 when anything did not hold.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from . import faults
from .common import FRAMEWORKS, REPO, Row
from .report import table, write_docs
from .scenarios import SCENARIOS

#: How much of each scenario runs: the sizes the issue named, and a soak of its own length.
SIZES = {
    "faults": {"objects": 10},
    "flood": {"connections": 1000, "bodies": 200},
    "slowloris": {"clients": 200},
    "fuzz": {"count": 500, "fuzz_seed": 14},
    "sigterm": {"in_flight": 16},
    "soak": {"seconds": 60.0},
}


def main(argv: list[str] | None = None) -> int:
    """Run the suite; 0 when everything held."""
    parser = argparse.ArgumentParser(prog="python -m reliability.run")
    parser.add_argument("--servers", default=",".join(FRAMEWORKS))
    parser.add_argument("--only", default=",".join(SIZES), help="scenarios, comma-separated")
    parser.add_argument("--soak", type=float, default=SIZES["soak"]["seconds"], help="seconds")
    parser.add_argument("--docs", action="store_true", help="write docs/reliability.md")
    args = parser.parse_args(argv)
    servers = tuple(name for name in args.servers.split(",") if name)
    only = [name for name in args.only.split(",") if name]
    unknown = [name for name in only if name not in SIZES] + [
        name for name in servers if name not in FRAMEWORKS
    ]
    if unknown:
        parser.error(f"unknown scenario or server: {', '.join(unknown)}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reliability-") as root:
        for name in only:
            began = time.monotonic()
            if name == "faults":
                found = faults.scenario(Path(root) / name, servers, **SIZES[name])
            else:
                sizes = dict(SIZES[name])
                if name == "soak":
                    sizes["seconds"] = args.soak
                found = [
                    SCENARIOS[name](Path(root) / f"{name}-{server}", server, **sizes)
                    for server in servers
                ]
            rows += found
            for row in found:
                print(("held    " if row.held else "FAILED  ") + f"{row.scenario} {row.server}: "
                      f"{row.tried}: {row.result}", flush=True)  # fmt: skip
                for problem in row.problems:
                    print(f"        {problem}", flush=True)
            print(f"-- {name}: {time.monotonic() - began:.0f} s", flush=True)
    minutes = (time.monotonic() - started) / 60
    print()
    print(table(rows))
    if args.docs:
        write_docs(REPO / "docs" / "reliability.md", rows, minutes)
    held = all(row.held for row in rows)
    print(f"\n{sum(row.held for row in rows)} of {len(rows)} held in {minutes:.1f} min")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
