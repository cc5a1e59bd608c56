"""Floods, slowloris, seeded fuzz, SIGTERM with objects in flight, and a soak.

Each scenario starts its own server under ``aisetl serve`` against an emulated target,
measures from the outside (a separate ``/health`` prober, ``/proc`` for fds and RSS) and
returns one :class:`~reliability.common.Row` per server.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

from aisetl.target import ETL, EmulatedTarget

from .common import BASE_ENV, REPO, Row, open_fds, percentile, rss_bytes, serve_argv
from .flood import flood
from .hostile import WS_MESSAGES, requests

HEALTH_P99 = 0.1  # seconds: what a probe may take at the 99th percentile under load


@contextmanager
def server(
    root: Path, framework: str, spec: str = "tests.transformers:Upper", **env: str
) -> Iterator[tuple[EmulatedTarget, ETL]]:
    """One emulated target and one server of ``framework`` running ``spec``."""
    with EmulatedTarget(root, time_scale=0.01, ws_timeout=30) as target:
        etl = target.launch(
            f"rel-{framework}", serve_argv(spec, framework),
            comm="ws" if framework == "fastapi" else "hpush",
            env={**BASE_ENV, **env}, cwd=str(REPO), init_timeout=60,
        )  # fmt: skip
        yield target, etl


class Prober:
    """``/health`` probes from a process of their own, kept for a window of time."""

    def __init__(self, etl: ETL, interval: float = 0.02, seconds: float = 600.0) -> None:
        address = etl.server()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "reliability.probe", address.host, str(address.port),
             str(seconds), str(interval)],
            stdout=subprocess.PIPE, cwd=str(REPO),
        )  # fmt: skip

    def stop(self, start: float, end: float) -> tuple[list[float], list[str]]:
        """Latencies and failures of the probes sent between ``start`` and ``end``."""
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=30)
        latencies, failures = [], []
        for line in out.decode().splitlines():
            probe = json.loads(line)
            if start <= probe["t"] <= end:
                if "error" in probe:
                    failures.append(probe["error"])
                else:
                    latencies.append(probe["s"])
        return latencies, failures


def _health_text(latencies: list[float], failures: list[str]) -> str:
    return (
        f"/health p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
        f"max {max(latencies, default=0) * 1000:.0f} ms ({len(latencies)} probes"
        + (f", {len(failures)} failed" if failures else "")
        + ")"
    )


def _health_held(latencies: list[float], failures: list[str]) -> bool:
    return bool(latencies) and not failures and percentile(latencies, 0.99) <= HEALTH_P99


# --- floods ------------------------------------------------------------------------------------


def flood_scenario(root: Path, framework: str, connections: int, bodies: int) -> Row:
    """``connections`` new keep-alive clients and ``bodies`` 4 MiB bodies at once."""
    with server(root, framework) as (_, etl):
        address = etl.server()
        prober = Prober(etl)
        time.sleep(0.5)
        start = time.monotonic()
        result = asyncio.run(
            flood(address.host, address.port, connections=connections, bodies=bodies)
        )
        end = time.monotonic()
        latencies, failures = prober.stop(start, end)
        alive = etl.processes[0].alive
    answered = result.small_ok + result.large_ok
    return Row(
        "flood",
        framework,
        f"{connections} keep-alive clients + {bodies} x 4 MiB bodies at once",
        f"{answered}/{connections + bodies} answered byte-exact in {result.seconds:.1f} s; "
        + _health_text(latencies, failures),
        alive and not result.errors and _health_held(latencies, failures),
        tuple(result.errors[:3]) + tuple(failures[:2]),
    )


# --- slowloris ---------------------------------------------------------------------------------


def _slow_client(host: str, port: int, answers: list[bytes], limit: float) -> None:
    data = b""
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"PUT /b/o HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            stop = time.monotonic() + limit
            while time.monotonic() < stop:
                sock.settimeout(0.1)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    sock.send(b"a")
                    continue
                if not chunk:
                    break
                data += chunk
    except OSError:
        pass
    answers.append(data)


def slowloris_scenario(root: Path, framework: str, clients: int) -> Row:
    """``clients`` connections sending their head a byte every 100 ms, and normal traffic."""
    with server(root, framework) as (target, etl):
        address = etl.server()
        target.bucket("b").put("o", b"served")
        answers: list[bytes] = []
        threads = [
            threading.Thread(target=_slow_client, args=(address.host, address.port, answers, 30.0))
            for _ in range(clients)
        ]
        prober = Prober(etl, interval=0.05)
        start = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        normal = [target.hpush(etl, "b", "o", fqn=False) for _ in range(20)]
        for thread in threads:
            thread.join(60)
        end = time.monotonic()
        latencies, failures = prober.stop(start, end)
    served = sum(1 for result in normal if result.content == b"SERVED")
    timed_out = sum(1 for answer in answers if answer.startswith(b"HTTP/1.1 408 "))
    return Row(
        "slowloris",
        framework,
        f"{clients} heads at 1 byte / 100 ms, 20 normal requests meanwhile",
        f"normal {served}/20 served; slow heads answered 408: {timed_out}/{clients} in "
        f"{end - start:.1f} s; " + _health_text(latencies, failures),
        served == 20 and timed_out == clients and _health_held(latencies, failures),
        tuple(failures[:2]),
    )


# --- seeded fuzz -------------------------------------------------------------------------------


def _exchange(host: str, port: int, request: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def fuzz_scenario(root: Path, framework: str, count: int, fuzz_seed: int) -> Row:
    """``count`` seeded malformed requests (and ws messages for FastAPI)."""
    bad: list[str] = []
    statuses: dict[str, int] = {}
    with server(root, framework, AISETL_HOP_ALLOW="allowed.invalid") as (target, etl):
        address = etl.server()
        target.bucket("b").put("o", b"hello")
        profile = settings(
            max_examples=count,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )

        @seed(fuzz_seed)
        @profile
        @given(request=requests())
        def walk(request: bytes) -> None:
            answer = _exchange(address.host, address.port, request)
            if not answer.startswith(b"HTTP/1."):
                bad.append(f"no answer to {request[:80]!r}")
                return
            status = answer.split(b" ", 2)[1].decode()
            statuses[status] = statuses.get(status, 0) + 1
            head = answer.partition(b"\r\n\r\n")[0].lower()
            transfer = b"transfer-encoding:" in request.lower()
            if status.startswith("5") and not (status == "501" and transfer):
                bad.append(f"{status} to {request[:80]!r}")
            elif status[0] == "4" and b"content-type: text/plain" not in head:
                bad.append(f"{status} not in the error format: {answer[:80]!r}")

        prober = Prober(etl, interval=0.05)
        start = time.monotonic()
        walk()
        ws_note = ""
        if framework == "fastapi":
            ws_note = _ws_fuzz(target, etl, count // 2, fuzz_seed, bad)
        end = time.monotonic()
        latencies, failures = prober.stop(start, end)
        alive = etl.processes[0].alive
        tracebacks = etl.logs().count("Traceback")
    codes = ", ".join(f"{code}x{n}" for code, n in sorted(statuses.items()))
    return Row(
        "fuzz",
        framework,
        f"{count} seeded malformed requests (seed {fuzz_seed})"
        + (f", {ws_note}" if ws_note else ""),
        f"answers {codes}; bad {len(bad)}; tracebacks {tracebacks}; "
        + _health_text(latencies, failures),
        alive and not bad and not tracebacks and _health_held(latencies, failures),
        tuple(bad[:5]),
    )


def _ws_fuzz(target: EmulatedTarget, etl: ETL, count: int, fuzz_seed: int, bad: list[str]) -> str:
    import websockets

    address = etl.server()
    url = f"ws://{address.host}:{address.port}/ws"
    control = json.dumps({"path": "b/o", "fqn": target.bucket("b").fqn("o")}).encode()

    async def one(message: bytes) -> None:
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            await ws.send(message)
            for _ in range(3):
                await ws.send(control)
            answers: list[Any] = []
            while b"HELLO" not in answers:
                answers.append(await asyncio.wait_for(ws.recv(), 10))

    profile = settings(
        max_examples=count, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )

    @seed(fuzz_seed)
    @profile
    @given(message=WS_MESSAGES)
    def walk(message: bytes) -> None:
        try:
            asyncio.run(one(message))
        except Exception as exc:
            bad.append(f"ws {message[:60]!r}: {type(exc).__name__}: {exc}")

    walk()
    return f"{count} ws control messages"


# --- SIGTERM -----------------------------------------------------------------------------------


def sigterm_scenario(root: Path, framework: str, in_flight: int) -> Row:
    """SIGTERM while ``in_flight`` objects are being transformed (1.5 s each)."""
    with server(root, framework, AISETL_GRACE_PERIOD="10") as (target, etl):
        bucket = target.bucket("b")
        for index in range(in_flight):
            bucket.put(f"o{index}", f"object {index}".encode() * 1000)
        results: list[Any] = [None] * in_flight

        def send(index: int) -> None:
            results[index] = target.hpush(etl, bucket, f"o{index}", etl_args="sleep=1.5")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(in_flight)]
        for thread in threads:
            thread.start()
        time.sleep(0.7)
        process = etl.processes[0]
        process.proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(30)
        deadline = time.monotonic() + 20
        while process.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        code = process.proc.returncode
    intact = sum(
        1
        for index, result in enumerate(results)
        if result is not None and result.content == (f"object {index}".encode() * 1000).upper()
    )
    return Row(
        "SIGTERM",
        framework,
        f"SIGTERM with {in_flight} objects in flight",
        f"{intact}/{in_flight} delivered intact; exit status {code}",
        intact == in_flight and code == 0,
    )


# --- soak --------------------------------------------------------------------------------------


def _vanishing_client(host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(
                b"PUT /b/o HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 500
            )
    except OSError:
        pass


def soak_scenario(root: Path, framework: str, seconds: float) -> Row:
    """Good objects, failing transforms and vanishing clients for ``seconds``; fds and RSS."""
    counts = {"good": 0, "failed": 0, "wrong": 0, "vanished": 0}
    with server(root, framework) as (target, etl):
        address = etl.server()
        bucket = target.bucket("b")
        bucket.put("o", b"soak" * 4096)
        pid = etl.processes[0].pid
        stop = time.monotonic() + seconds

        def load(kind: str) -> None:
            while time.monotonic() < stop:
                if kind == "vanish":
                    _vanishing_client(address.host, address.port)
                    counts["vanished"] += 1
                    time.sleep(0.01)
                    continue
                args = "fail" if kind == "fail" else ""
                result = target.hpush(etl, bucket, "o", fqn=kind == "fqn", etl_args=args)
                if kind == "fail":
                    counts["failed" if result.error is not None else "wrong"] += 1
                elif result.content == b"SOAK" * 4096:
                    counts["good"] += 1
                else:
                    counts["wrong"] += 1

        kinds = ("body", "fqn", "fail", "fail", "vanish", "vanish")
        workers = [threading.Thread(target=load, args=(kind,)) for kind in kinds]
        fds_before = open_fds(pid)
        for worker in workers:
            worker.start()
        # Warm: buffers, pools and threads at their working size. A thread keeps a few files
        # of its own (its schedstat, say) until it ends, and a connection is an fd: they grow
        # with use up to a bound, where a leak grows with every object. So, as for RSS, the
        # end is compared with the warm state (the fds before the load are shown too).
        time.sleep(min(5.0, seconds / 4))
        rss_warm, fds_warm = rss_bytes(pid), open_fds(pid)
        for worker in workers:
            worker.join(seconds + 30)
        time.sleep(1.0)
        fds_after, rss_end = open_fds(pid), rss_bytes(pid)
        alive = etl.processes[0].alive
    rss_growth = (rss_end - rss_warm) / 2**20
    flat = fds_after - fds_warm <= 10 and rss_growth <= max(20.0, rss_warm / 2**20 * 0.2)
    return Row(
        "soak",
        framework,
        f"{seconds:.0f} s: good, FQN, failing transforms, clients gone mid-body",
        f"{counts['good']} good, {counts['failed']} failed as asked, "
        f"{counts['vanished']} vanished, {counts['wrong']} wrong; "
        f"fds {fds_before} before, {fds_warm} warm, {fds_after} at the end; "
        f"RSS {rss_warm / 2**20:.0f} MiB warm, {rss_end / 2**20:.0f} MiB at the end",
        alive and flat and counts["wrong"] == 0,
    )


SCENARIOS: dict[str, Callable[..., Row]] = {
    "flood": flood_scenario,
    "slowloris": slowloris_scenario,
    "fuzz": fuzz_scenario,
    "sigterm": sigterm_scenario,
    "soak": soak_scenario,
}
