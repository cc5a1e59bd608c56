"""Echo on FastAPI: every object comes back unchanged.

Served by uvicorn; speaks hpush, hpull and WebSocket. Handy to check that a cluster reaches the
ETL at all, and as the baseline when measuring other transformers.
"""

from __future__ import annotations

from pathlib import Path

from aisetl.fastapi_server import FastAPIServer


class EchoServer(FastAPIServer):
    """Returns each object as it came."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        if isinstance(data, str):  # ETL_DIRECT_FQN=true: the target passed a local file
            return Path(data).read_bytes()
        return data
