"""Hello world: every object becomes the same greeting.

The smallest useful transformer: subclass a server, override ``transform``, return bytes.
"""

from __future__ import annotations

from aisetl.fastapi_server import FastAPIServer


class HelloWorldServer(FastAPIServer):
    """Answers every object with ``Hello World!``."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return b"Hello World!"
