"""Start an ETL server as a child process and wait until ``/health`` answers (§15.1-2)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from aisetl.http_client import HTTPClient, TransportError
from aisetl.protocol import HEALTH_PATH

#: Go target default when an init message has no ``init_timeout``.
DEFAULT_INIT_TIMEOUT = 45.0
#: How much of a server's log an error message quotes.
LOG_TAIL = 8192


def with_log_tail(message: str, log: str) -> str:
    """``message`` followed by the server's log tail, or by a line saying it is empty."""
    if not log.strip():
        return f"{message}\n--- server log: empty (the server printed nothing yet) ---"
    return f"{message}\n--- server log (tail) ---\n{log}"


class ServerStartError(RuntimeError):
    """A server exited or never became healthy; ``log`` holds what it printed."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(with_log_tail(message, log))
        self.log = log


#: The span of ports below the kernel's ephemeral range that :func:`free_port` picks from.
PORT_SPAN = 12000
_EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for port-0 binds and outgoing connections."""
    try:
        return int(Path(_EPHEMERAL_RANGE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, for a server to bind soon after.

    It is picked below the kernel's ephemeral range when one is free there: a port from that
    range may be given to an outgoing connection (or another port-0 bind) before the server
    binds it, which then fails to listen.
    """
    top = _ephemeral_low()
    for _ in range(64):  # bounded; a busy range falls back to the kernel's choice
        port = random.randrange(max(1024, top - PORT_SPAN), top)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def expand_argv(argv: Sequence[str], port: int, host: str = "127.0.0.1") -> list[str]:
    """Replace ``{port}`` and ``{host}`` in every argument."""
    return [arg.replace("{port}", str(port)).replace("{host}", host) for arg in argv]


def server_env(
    target_url: str,
    direct_put: bool,
    env: Mapping[str, str] | None = None,
    top_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The server's environment in the target's order (PROTOCOL.md §2.1).

    Ours first, then ``env`` (``runtime.env``), then the two variables a target sets
    (``AIS_TARGET_URL`` and ``direct_put``, lower case, as the target spells it), then
    ``top_env`` (the init message's top-level ``env``), which can override them.
    """
    result = dict(os.environ)
    result.setdefault("PYTHONUNBUFFERED", "1")
    result.pop("DIRECT_PUT", None)  # a target never sets it: do not leak ours into the pod
    result.update(env or {})
    result["AIS_TARGET_URL"] = target_url
    result["direct_put"] = "true" if direct_put else "false"
    result.update(top_env or {})
    return result


class ServerProcess:
    """A server started by us: its PID, port, and a log file with its stdout and stderr."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str],
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.host = host
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Never outlive the interpreter, even when nobody calls stop().
        weakref.finalize(self, _kill_if_running, self.proc)

    def __repr__(self) -> str:
        return f"<ServerProcess pid={self.pid} port={self.port} alive={self.alive}>"

    @property
    def pid(self) -> int:
        """The child's process ID."""
        return self.proc.pid

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def log(self, tail: int | None = None) -> str:
        """What the server printed so far (the last ``tail`` bytes when given)."""
        try:
            with open(self.log_path, "rb") as file:
                if tail is not None:
                    file.seek(max(0, os.path.getsize(self.log_path) - tail))
                return file.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    async def wait_healthy(self, client: HTTPClient, timeout: float = DEFAULT_INIT_TIMEOUT) -> None:
        """Poll ``GET /health`` until it answers 200-399; raise :class:`ServerStartError`."""
        deadline = time.monotonic() + timeout
        interval = 0.02
        head = (
            f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "User-Agent: kube-probe/1.30\r\n\r\n"
        ).encode()
        last = "no answer yet"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerStartError(
                    f"server {self.argv!r} exited with code {code} before it became healthy",
                    self.log(LOG_TAIL),
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerStartError(
                    f"server {self.argv!r} did not become healthy on port {self.port} within "
                    f"{timeout:g} s (last: {last})",
                    self.log(LOG_TAIL),
                )
            try:
                response = await client.send(
                    self.host, self.port, head, method="GET", timeout=min(5.0, max(left, 0.05))
                )
            except TransportError as exc:
                last = str(exc)
            else:
                if 200 <= response.status < 400:
                    return
                last = f"status {response.status}"
            await asyncio.sleep(min(interval, max(deadline - time.monotonic(), 0)))
            interval = min(interval * 1.5, 0.25)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit code.

        Processes left in the session we created for the server (e.g. its workers) get
        SIGKILL too.
        """
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5.0)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    async def astop(self, grace: float = 5.0) -> int | None:
        """:meth:`stop` without blocking the event loop."""
        return await asyncio.to_thread(self.stop, grace)


def _kill_if_running(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def start_server(
    argv: Sequence[str],
    *,
    target_url: str,
    client: HTTPClient,
    log_path: str | os.PathLike[str],
    direct_put: bool = True,
    env: Mapping[str, str] | None = None,
    top_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    init_timeout: float = DEFAULT_INIT_TIMEOUT,
) -> ServerProcess:
    """Start ``argv`` (``{port}``/``{host}`` expanded) and wait until it is healthy.

    On failure the process is stopped and :class:`ServerStartError` carries its log.
    """
    chosen = free_port(host) if port is None else port
    process = ServerProcess(
        expand_argv(argv, chosen, host),
        port=chosen,
        host=host,
        env=server_env(target_url, direct_put, env, top_env),
        cwd=cwd,
        log_path=log_path,
    )
    try:
        await process.wait_healthy(client, init_timeout)
    except BaseException:
        await process.astop(grace=1.0)
        raise
    return process
