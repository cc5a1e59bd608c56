"""Small servers for the tests of ``aisetl.testing`` and the ``aisetl`` command."""

from __future__ import annotations

import os
import time

from aisetl import ETLServer, TransformError


class Upper(ETLServer):
    """Upper-cases the object and appends ``etl_args``; objects starting with ``bad`` fail."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        if isinstance(data, str):  # ETL_DIRECT_FQN: the target passed the file's path
            with open(data, "rb") as file:
                data = b"fqn:" + file.read()
        if data.startswith(b"bad"):
            raise TransformError(415, f"cannot take {path}")
        if data.startswith(b"boom"):
            raise RuntimeError("exploded")
        return data.upper() + etl_args.encode()


class Env(ETLServer):
    """Answers with the value of the variable named by ``etl_args``."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return os.environ.get(etl_args, "<unset>").encode()


class PathEcho(ETLServer):
    """Answers with the object path it was given."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return path.encode()


class Crash(ETLServer):
    """Fails while starting, like a server whose model file is missing."""

    def __init__(self) -> None:
        super().__init__()
        raise RuntimeError("model file missing")

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return b""


class Sleepy(ETLServer):
    """Takes far too long to start."""

    def __init__(self) -> None:
        super().__init__()
        print("loading a very large model", flush=True)
        time.sleep(60)

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return b""


class Slow(ETLServer):
    """Upper-cases each object after a short pause (for interrupted runs)."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        time.sleep(0.2)
        return data.upper() if isinstance(data, bytes) else data.encode()
