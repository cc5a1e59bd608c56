"""MD5: every object becomes the hex MD5 digest of its content (32 ASCII characters).

A streaming transformer: the object is read in pieces, so a 100 GB object needs no more memory
than a 1 KB one. The same result as ``md5sum`` and as AIStore's own MD5 checksums.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import BinaryIO

from aisetl.fastapi_server import FastAPIServer

CHUNK = 1024 * 1024


class MD5Server(FastAPIServer):
    """Answers each object with its MD5 digest in lower-case hex."""

    def transform_stream(self, reader: BinaryIO, path: str, etl_args: str) -> Iterator[bytes]:
        digest = hashlib.md5()
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
        yield digest.hexdigest().encode()
