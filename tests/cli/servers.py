"""Servers that fail the ways a newcomer's transformers do, for the command-line tests."""

from __future__ import annotations

import json
import os
import signal
import time

from aisetl import ETLServer


class Fragile(ETLServer):
    """Upper-cases; ``die`` objects end the process, ``kill`` ones SIGKILL it, ``slow`` ones hang.

    ``boom`` objects raise (a traceback in the log), ``oops`` ones raise another error.
    """

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        if isinstance(data, str):
            with open(data, "rb") as file:
                data = file.read()
        if data.startswith(b"die"):
            os._exit(3)
        if data.startswith(b"kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        if data.startswith(b"slow"):
            time.sleep(2.5)
        if data.startswith(b"boom"):
            raise RuntimeError("exploded")
        if data.startswith(b"oops"):
            raise KeyError("no such column")
        return data.upper()


class Sleeper(ETLServer):
    """Upper-cases each object after ``etl_args`` seconds (0.2 when empty)."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        time.sleep(float(etl_args or "0.2"))
        assert isinstance(data, bytes)
        return data.upper()


class Show(ETLServer):
    """Answers with what the transform was given, as JSON (for the README's table)."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        kind = "bytes" if isinstance(data, bytes) else "str"
        value = data.decode() if isinstance(data, bytes) else data
        return json.dumps(
            {"data": kind, "value": value, "path": path, "etl_args": etl_args}
        ).encode()
