"""Hop faults x communication types: every object lands byte-exact or fails visibly.

Two emulated targets; every destination object belongs to the second one, so each result is
delivered to it by direct put, and the fault sits there: refused connections, a reset after the
request head or in the middle of the body, 500, 503, a hop slower than the server's read
timeout, a hop that fails twice and then works. For each object the target's own view is
checked against what arrived: LOST counts objects a target took for done that did not land
byte-exact (and corrupt objects), the only outcome that must never happen.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aisetl.target import Cluster, TransformResult

from .common import BASE_ENV, REPO, Row, serve_argv

#: name -> how the fault is set on the destination target (``faults``, the cell's bucket).
FAULTS: dict[str, Callable[[object, str], None]] = {
    "refuse": lambda target, path: target.faults.refuse(0.5),  # type: ignore[attr-defined]
    "reset": lambda target, path: target.faults.reset(10**6, method="PUT", path=path),  # type: ignore[attr-defined]
    "reset-mid-body": lambda target, path: target.faults.reset(  # type: ignore[attr-defined]
        10**6, mid_body=True, method="PUT", path=path
    ),
    "500": lambda target, path: target.faults.respond(  # type: ignore[attr-defined]
        500, "injected 500", count=10**6, method="PUT", path=path
    ),
    "503": lambda target, path: target.faults.respond(  # type: ignore[attr-defined]
        503, "injected 503", count=10**6, method="PUT", path=path
    ),
    "slow": lambda target, path: target.faults.delay(  # type: ignore[attr-defined]
        2.0, count=10**6, method="PUT", path=path
    ),
    "fail-2-then-ok": lambda target, path: target.faults.reset(  # type: ignore[attr-defined]
        2, method="PUT", path=path
    ),
}
#: comm name -> (transform, how the target sends it, pass the FQN)
COMMS = {
    "hpush": ("Upper", "hpush", False),
    "fqn": ("Upper", "hpush", True),
    "hpull": ("Upper", "hpull", False),
    "stream": ("UpperStream", "hpush", False),
    "ws": ("Upper", "ws", False),
    "ws-stream": ("UpperStream", "ws", False),
}


@dataclass
class Tally:
    """Outcomes of one cell."""

    landed: int = 0
    failed: int = 0
    lost: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


def _data(name: str) -> bytes:
    return random.Random(name).randbytes(20_000)


def _judge(tally: Tally, result: TransformResult | None, name: str, stored: bytes | None) -> None:
    expected = _data(name).upper()
    if result is not None and result.error is not None:
        tally.failed += 1
        code = result.error.ecode or result.status
        tally.statuses[code] = tally.statuses.get(code, 0) + 1
        if stored is not None and stored != expected:
            tally.lost.append(f"{name}: failed, and a corrupt object was stored")
        return
    if result is not None and result.lost is not None:
        tally.lost.append(f"{name}: {result.lost[:120]}")
        return
    if stored == expected:
        tally.landed += 1
    else:
        tally.lost.append(f"{name}: taken for done, {'missing' if stored is None else 'wrong'}")


def run_cell(cluster: Cluster, framework: str, comm: str, fault: str, objects: int) -> Tally:
    """Send ``objects`` objects through one server with one fault on the destination."""
    spec, kind, fqn = COMMS[comm]
    etl = cluster.etl(f"{framework}-{spec.lower()}")
    cell = f"{framework}-{comm}-{fault}".replace("_", "-")
    src, dst = f"s-{cell}", f"d-{cell}"
    source, destination = cluster.targets
    bucket = source.bucket(src)
    destination.bucket(dst)
    names = [f"o{index}" for index in range(objects)]
    for name in names:
        bucket.put(name, _data(name))
    tally = Tally()
    FAULTS[fault](destination, dst)
    try:
        if kind == "ws":
            report = cluster.run_job(
                etl, src, dst, comm="ws", fqn=False, continue_on_error=True, timeout=120
            )
            failed = {error.obj_name.rsplit("/", 1)[-1]: error for error in report.errors}
            for name in names:
                stored = _stored(destination, dst, name)
                error = failed.get(name)
                result = TransformResult(name)
                if error is not None:
                    result.error = error
                    if "would be stored empty or skipped" in error.msg:
                        result.error, result.lost = None, error.msg
                _judge(tally, result, name, stored)
        else:
            results = cluster.run(_copies(source, etl, bucket, names, dst, kind, fqn), 180)
            for name, result in zip(names, results, strict=True):
                _judge(tally, result, name, _stored(destination, dst, name))
    finally:
        destination.faults.clear()
    return tally


async def _copies(source, etl, bucket, names, dst, kind, fqn):  # type: ignore[no-untyped-def]
    return await asyncio.gather(
        *(source.core.copy(etl, bucket, name, (dst, name), comm=kind, fqn=fqn) for name in names)
    )


def _stored(target: object, bucket: str, name: str) -> bytes | None:
    found = target.bucket(bucket)  # type: ignore[attr-defined]
    return found.get(name) if found.exists(name) else None


def scenario(root: Path, frameworks: tuple[str, ...], objects: int) -> list[Row]:
    """The fault matrix, one row per server and comm type."""
    rows = []
    with Cluster(root, targets=2, placement="remote", time_scale=0.001, ws_timeout=60) as cluster:
        for framework in frameworks:
            env = {**BASE_ENV, "AISETL_WS_ERRORS": "binary"}
            for spec in ("Upper", "UpperStream"):
                argv = serve_argv(f"tests.transformers:{spec}", framework)
                cluster.launch(
                    f"{framework}-{spec.lower()}", argv,
                    comm="ws" if framework == "fastapi" else "hpush", env=env, cwd=str(REPO),
                    init_timeout=60, per_target=False,
                )  # fmt: skip
        for framework in frameworks:
            comms = [c for c in COMMS if framework == "fastapi" or not c.startswith("ws")]
            for comm in comms:
                landed = failed = 0
                lost: list[str] = []
                statuses: dict[int, int] = {}
                for fault in FAULTS:
                    tally = run_cell(cluster, framework, comm, fault, objects)
                    landed, failed = landed + tally.landed, failed + tally.failed
                    lost += [f"{fault}: {item}" for item in tally.lost]
                    for code, count in tally.statuses.items():
                        statuses[code] = statuses.get(code, 0) + count
                codes = ", ".join(f"{code}x{count}" for code, count in sorted(statuses.items()))
                rows.append(
                    Row(
                        "hop faults",
                        framework,
                        f"{comm}: {len(FAULTS)} faults x {objects} objects",
                        f"landed {landed}, failed visibly {failed} ({codes or '-'}), "
                        f"LOST {len(lost)}",
                        not lost,
                        tuple(lost[:5]),
                    )
                )
    return rows
