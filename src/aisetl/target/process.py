"""Start an ETL server as a child process and wait until ``/health`` answers (§15.1-2)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

from aisetl.http_client import HTTPClient, TransportError
from aisetl.protocol import HEALTH_PATH
from aisetl.target.ports import PortLease, free_port, listener_is_ours

#: Go target default when an init message has no ``init_timeout``.
DEFAULT_INIT_TIMEOUT = 45.0
#: How much of a server's log an error message quotes.
LOG_TAIL = 8192
#: How many times :func:`start_server` starts a server whose picked port was taken.
PORT_ATTEMPTS = 3
#: What a server that could not listen prints (``strerror(EADDRINUSE)``).
_ADDRESS_IN_USE = "Address already in use"


def with_log_tail(message: str, log: str) -> str:
    """``message`` followed by the server's log tail, or by a line saying it is empty."""
    if not log.strip():
        return f"{message}\n--- server log: empty (the server printed nothing yet) ---"
    return f"{message}\n--- server log (tail) ---\n{log}"


class ServerStartError(RuntimeError):
    """A server exited or never became healthy; ``log`` holds what it printed.

    ``port_taken``: its port was taken by another process (the server could not listen, or
    ``/health`` on it was answered by a server that is not ours).
    """

    def __init__(self, message: str, log: str = "", *, port_taken: bool = False) -> None:
        super().__init__(with_log_tail(message, log))
        self.log = log
        self.port_taken = port_taken


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
                log = self.log(LOG_TAIL)
                raise ServerStartError(
                    f"server {self.argv!r} exited with code {code} before it became healthy",
                    log,
                    port_taken=_ADDRESS_IN_USE in log,
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
                    if listener_is_ours(self.pid, self.port) is False:
                        raise ServerStartError(
                            f"port {self.port} is answered by another process, not by server "
                            f"{self.argv!r} (pid {self.pid}): it was taken before the server "
                            "could listen",
                            self.log(LOG_TAIL),
                            port_taken=True,
                        )
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

    Without ``port`` it picks one and holds it (:class:`~aisetl.target.ports.PortLease`)
    until the server is healthy; when the port was taken all the same, it starts the server
    again on another one, up to :data:`PORT_ATTEMPTS` times in all within ``init_timeout``
    (the last without holding the port, for a server that binds without ``SO_REUSEADDR``).
    On failure the process is stopped and :class:`ServerStartError` carries its log.
    """
    deadline = time.monotonic() + init_timeout
    attempts = 1 if port is not None else PORT_ATTEMPTS
    environment = server_env(target_url, direct_put, env, top_env)
    for attempt in range(1, attempts + 1):
        lease: PortLease | None = None
        if port is not None:
            chosen = port
        elif attempt < attempts:
            lease = PortLease(host)
            chosen = lease.port
        else:
            chosen = free_port(host)
        try:
            return await _start_once(
                expand_argv(argv, chosen, host),
                port=chosen,
                host=host,
                env=environment,
                cwd=cwd,
                log_path=log_path,
                client=client,
                timeout=max(deadline - time.monotonic(), 0.05),
            )
        except ServerStartError as exc:
            if not exc.port_taken or attempt == attempts or time.monotonic() >= deadline:
                raise
        finally:
            if lease is not None:
                lease.release()
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _start_once(
    argv: list[str],
    *,
    port: int,
    host: str,
    env: dict[str, str],
    cwd: str | os.PathLike[str] | None,
    log_path: str | os.PathLike[str],
    client: HTTPClient,
    timeout: float,
) -> ServerProcess:
    """Start ``argv`` on ``port`` and wait until it is healthy; stop it on failure."""
    process = ServerProcess(argv, port=port, host=host, env=env, cwd=cwd, log_path=log_path)
    try:
        await process.wait_healthy(client, timeout)
    except BaseException:
        await process.astop(grace=1.0)
        raise
    return process
