"""Echo on the standard library's HTTP server: every object comes back unchanged.

Needs no web framework; speaks hpush and hpull. Handy to check that a cluster reaches the ETL
at all, and as the baseline when measuring other transformers.
"""

from __future__ import annotations

from pathlib import Path

from aisetl.http_multi_threaded_server import HTTPMultiThreadedServer


class EchoServer(HTTPMultiThreadedServer):
    """Returns each object as it came."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        if isinstance(data, str):  # ETL_DIRECT_FQN=true: the target passed a local file
            return Path(data).read_bytes()
        return data
