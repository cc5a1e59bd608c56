"""Test helpers for your own transformers: run the server for real, send it objects.

>>> from aisetl.testing import serve
>>> with serve(UpperServer, framework="fastapi") as etl:
...     assert etl.transform(b"abc", comm="ws") == b"ABC"

The server runs as a real process on its real stack (``python -m aisetl serve``), on a real
socket, and an emulated AIStore target sends it objects exactly as a cluster would. Everything
started is stopped when the block ends. The pytest fixture ``etl_server`` does the same per test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import itertools
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from aisetl import comm as comms
from aisetl.loader import FRAMEWORKS, LoadError, framework_of
from aisetl.server import ETLServer
from aisetl.target import ETL, EmulatedTarget, ServerStartError, TransformResult
from aisetl.target.driver import RetryPolicy
from aisetl.target.wire import MSG_NOT_FOUND

__all__ = [
    "COMM_TYPES",
    "LocalETL",
    "Result",
    "ServerStartError",
    "TransformFailed",
    "serve",
    "server_argv",
    "server_spec",
]

#: Communication types a test can use: HTTP push, HTTP pull, WebSocket.
COMM_TYPES = comms.NAMES
_ETL_ERROR_PREFIX = "ETL error: "
_LOG_LINES = 20
_names = itertools.count(1)
_MSG_DELIVERED = "no result: the server answered as if it had delivered the object by direct put"


class TransformFailed(Exception):
    """The server answered an error: ``status`` (0 when no answer) and its ``message``."""

    def __init__(self, status: int, message: str, *, path: str = "", log: str = "") -> None:
        text = f"transform of {path!r} failed: status {status}: {message}"
        if log:
            text += f"\n--- server log (last {_LOG_LINES} lines) ---\n{log}"
        super().__init__(text)
        self.status = status
        self.message = message
        self.path = path


@dataclass
class Result:
    """What the target concluded about one object (see :meth:`LocalETL.send`)."""

    status: int  # the server's HTTP status (0: no answer)
    content: bytes | None  # the transformed bytes (None on error or direct put)
    error: str | None  # the server's error message (None on success)
    delivered: bool  # the server delivered the result by direct put (204 / ws text)
    raw: TransformResult  # the emulator's full record (attempts, framing, target message)

    @property
    def ok(self) -> bool:
        """No error."""
        return self.error is None


def _error_text(result: TransformResult) -> str | None:
    if result.error is None:
        # A ws text reply where a result should come back: a cluster would lose the object.
        return result.lost
    msg = result.error.msg
    return msg[len(_ETL_ERROR_PREFIX) :] if msg.startswith(_ETL_ERROR_PREFIX) else msg


def _split_path(path: str) -> tuple[str, str]:
    bucket, sep, name = path.lstrip("/").partition("/")
    if not sep or not bucket or not name:
        raise ValueError(f"path {path!r} must be 'bucket/object' (e.g. 'images/cat.jpg')")
    return bucket, name


class LocalETL:
    """A running server and the emulated target that talks to it."""

    def __init__(self, target: EmulatedTarget, etl: ETL) -> None:
        self.target = target
        self.etl = etl

    def __repr__(self) -> str:
        return f"<LocalETL {self.etl.name} {self.url}>"

    @property
    def name(self) -> str:
        """The ETL name the server was registered under."""
        return self.etl.name

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the server."""
        return self.etl.url()

    @property
    def logs(self) -> str:
        """What the server process printed so far (stdout and stderr)."""
        return self.etl.logs()

    @property
    def pid(self) -> int | None:
        """The server's process ID."""
        processes = self.etl.processes
        return processes[0].pid if processes else None

    def send(
        self,
        data: bytes | bytearray | memoryview | str,
        *,
        comm: str = "hpush",
        fqn: bool = False,
        path: str = "bucket/object",
        etl_args: str = "",
    ) -> Result:
        """Send one object as a target would (inline request); never raises for an error answer.

        ``comm`` is ``hpush``, ``hpull`` or ``ws``; ``fqn`` passes the object's local file path
        instead of its bytes; ``path`` is ``bucket/object``; ``etl_args`` the argument string.
        """
        if comm not in COMM_TYPES:
            raise ValueError(f"unknown comm {comm!r}: use one of {', '.join(COMM_TYPES)}")
        payload = data.encode() if isinstance(data, str) else bytes(data)
        bucket, name = _split_path(path)
        self.target.bucket(bucket).put(name, payload)
        if comm == "ws":
            self._ensure_ws_pool()
        raw = self.target.transform(self.etl, bucket, name, comm=comm, fqn=fqn, etl_args=etl_args)
        return Result(raw.status, raw.content, _error_text(raw), raw.delivered, raw)

    def transform(
        self,
        data: bytes | bytearray | memoryview | str,
        *,
        comm: str = "hpush",
        fqn: bool = False,
        path: str = "bucket/object",
        etl_args: str = "",
    ) -> bytes:
        """Send one object and return the transformed bytes; raise :class:`TransformFailed`."""
        result = self.send(data, comm=comm, fqn=fqn, path=path, etl_args=etl_args)
        if result.error is not None or result.content is None:
            message = result.error or _MSG_DELIVERED
            status = result.status
            if result.raw.error is not None and result.raw.error.msg == MSG_NOT_FOUND:
                status = status or 404
            tail = "\n".join(self.logs.splitlines()[-_LOG_LINES:])
            raise TransformFailed(status, message, path=path, log=tail)
        return result.content

    def _ensure_ws_pool(self) -> None:
        if self.etl.inline_pools.get(0) is not None:
            return
        cluster = self.target.cluster
        pool = cluster.core.ws_pool(self.etl, 0, cluster.core.multiplier)
        cluster.run(pool.open())
        self.etl.inline_pools[0] = pool


def server_spec(server: type[ETLServer] | str) -> str:
    """What ``aisetl serve`` needs to load ``server`` in a new process (``module:Class`` or file).

    A class must be defined at module level in an importable module or a file.
    """
    if isinstance(server, str):
        return server
    if not (inspect.isclass(server) and issubclass(server, ETLServer)):
        raise TypeError(f"{server!r} is not a server class (a subclass of aisetl.ETLServer)")
    qualname = server.__qualname__
    if "<locals>" in qualname or "." in qualname:
        raise LoadError(
            f"{server.__name__} is defined inside a function or class: define it at module "
            "level so the server process can import it"
        )
    module = sys.modules.get(server.__module__)
    file = getattr(module, "__file__", None)
    if server.__module__ != "__main__":
        with contextlib.suppress(ImportError, ValueError):
            found = importlib.util.find_spec(server.__module__)
            if found is not None and found.origin and file and _same(found.origin, file):
                return f"{server.__module__}:{qualname}"
    if file:
        return f"{os.path.abspath(file)}:{qualname}"
    raise LoadError(f"cannot tell where {server.__name__} is defined: pass 'module:Class'")


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def server_argv(
    spec: str, *, framework: str | None = None, workers: int = 1, host: str = "127.0.0.1"
) -> list[str]:
    """The command that starts ``spec`` on its real stack (``{port}`` left to the launcher)."""
    argv = [sys.executable, "-m", "aisetl", "serve", spec, "--host", host, "--port", "{port}"]
    argv += ["--workers", str(workers)]
    if framework is not None:
        argv += ["--server", framework]
    return argv


def _check_framework(server: type[ETLServer] | str, framework: str | None) -> None:
    if framework is not None and framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}: use one of {', '.join(FRAMEWORKS)}")
    if framework is None or isinstance(server, str):
        return
    bound = framework_of(server)
    if bound is not None and bound != framework:
        raise LoadError(f"{server.__name__} is built on the {bound} server, not {framework}")


def _child_env(env: Mapping[str, str] | None, direct_fqn: bool) -> dict[str, str]:
    """Variables for the server: the caller's ``env``, our import path, ETL_DIRECT_FQN."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    inherited = os.environ.get("PYTHONPATH", "")
    result = {"PYTHONPATH": os.pathsep.join([*paths, inherited] if inherited else paths)}
    if direct_fqn:
        result["ETL_DIRECT_FQN"] = "true"
    result.update(env or {})
    return result


def _etl_name(server: type[ETLServer] | str) -> str:
    base = server if isinstance(server, str) else server.__name__
    stem = "".join(ch if ch.isalnum() else "-" for ch in base.rsplit(":", 1)[-1].lower())
    stem = "-".join(part for part in stem.split("-") if part)[:20] or "etl"
    return f"{stem}-{os.getpid() % 10000}-{next(_names)}".strip("-")[:32]


@contextlib.contextmanager
def serve(
    server: type[ETLServer] | str,
    *,
    framework: str | None = None,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
    direct_fqn: bool = False,
    timeout: float = 30.0,
) -> Iterator[LocalETL]:
    """Start ``server`` as a real process behind an emulated target; stop both at exit.

    ``server`` is a class or ``"module:Class"`` / ``"path/to/file.py[:Class]"``;
    ``framework`` (``http``, ``flask``, ``fastapi``) picks the stack of a plain ETLServer;
    ``env`` adds variables; ``direct_fqn`` sets ``ETL_DIRECT_FQN``; ``timeout`` bounds both
    the start and each object. Raises :class:`ServerStartError` (with the server's log) when
    it does not become healthy.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    _check_framework(server, framework)
    argv = server_argv(server_spec(server), framework=framework, workers=workers)
    policy = RetryPolicy(time_scale=0.05, obj_timeout=timeout)
    with EmulatedTarget(policy=policy, ws_timeout=timeout, record=1000) as target:
        etl = target.launch(
            _etl_name(server),
            argv,
            comm="hpush",
            env=_child_env(env, direct_fqn),
            direct_put=True,
            init_timeout=timeout,
            obj_timeout=timeout,
        )
        yield LocalETL(target, etl)
