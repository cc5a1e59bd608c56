"""Servers that fail the ways a newcomer's transformers do, for the command-line tests."""

from __future__ import annotations

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
            time.sleep(4)
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
