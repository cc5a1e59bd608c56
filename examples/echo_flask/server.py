"""Echo on Flask: every object comes back unchanged.

Served by gunicorn; speaks hpush and hpull. Handy to check that a cluster reaches the ETL at
all, and as the baseline when measuring other transformers.
"""

from __future__ import annotations

from pathlib import Path

from aisetl.flask_server import FlaskServer


class EchoServer(FlaskServer):
    """Returns each object as it came."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        if isinstance(data, str):  # ETL_DIRECT_FQN=true: the target passed a local file
            return Path(data).read_bytes()
        return data
