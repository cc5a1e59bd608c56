"""Fixtures for the emulated-target tests: reference servers and scripted raw servers."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .rawserver import RawServer, Script

REPO = Path(__file__).resolve().parents[2]

#: A reference-SDK server (aistore 2.0.0) that upper-cases and appends ``etl_args``
#: (``raise`` makes it fail); argv: ``<framework>[-stream] <port>``.
REFERENCE_SERVER = """
import sys
kind, port = sys.argv[1], int(sys.argv[2])
framework, _, mode = kind.partition("-")
if framework == "fastapi":
    from aistore.sdk.etl.webserver.fastapi_server import FastAPIServer as Base
elif framework == "flask":
    from aistore.sdk.etl.webserver.flask_server import FlaskServer as Base
else:
    from aistore.sdk.etl.webserver.http_multi_threaded_server import (
        HTTPMultiThreadedServer as Base,
    )


class Upper(Base):
    def transform(self, data, path, etl_args):
        if etl_args == "raise":
            raise ValueError("asked to fail")
        if isinstance(data, str):
            with open(data, "rb") as file:
                data = file.read()
        return data.upper() + (etl_args or "").encode()


class StreamingUpper(Base):
    def transform_stream(self, reader, path, etl_args):
        while chunk := reader.read(4):
            yield chunk.upper()


server = (StreamingUpper if mode == "stream" else Upper)(host="127.0.0.1", port=port)
if framework == "fastapi":
    import uvicorn

    uvicorn.run(server.app, host="127.0.0.1", port=port, log_level="warning",
                ws_max_size=17179869184, ws_ping_interval=None, ws_ping_timeout=None)
else:
    server.start()
"""


def reference_python() -> str | None:
    """Interpreter with the reference SDK: ``$AISETL_REFERENCE_PYTHON``, else ``.venv-ref``."""
    configured = os.environ.get("AISETL_REFERENCE_PYTHON")
    candidate = configured or str(REPO / ".venv-ref" / "bin" / "python")
    return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None


@pytest.fixture(scope="session")
def ref_python() -> str:
    """The reference interpreter, or skip."""
    found = reference_python()
    if found is None:
        pytest.skip("reference SDK not available (set AISETL_REFERENCE_PYTHON)")
    return found


@pytest.fixture(scope="session")
def ref_argv(
    ref_python: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], list[str]]:
    """``ref_argv("fastapi")`` -> argv of an upper-casing reference server (``{port}``)."""
    script = tmp_path_factory.mktemp("reference") / "upper_server.py"
    script.write_text(REFERENCE_SERVER)

    def argv(kind: str) -> list[str]:
        return [ref_python, str(script), kind, "{port}"]

    return argv


@pytest.fixture
def raw_server() -> Iterator[Callable[[Script], RawServer]]:
    """Factory of started :class:`RawServer`; all are stopped after the test."""
    servers: list[RawServer] = []

    def make(script: Script) -> RawServer:
        server = RawServer(script).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def closed_port() -> int:
    """A port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def python() -> str:
    """This interpreter."""
    return sys.executable
