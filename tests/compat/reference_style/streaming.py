"""A streaming transformer written for the reference SDK (constant memory)."""

import zlib

from aistore.sdk.etl.webserver.fastapi_server import FastAPIServer


class Crc(FastAPIServer):
    """Streams the object back unchanged, then its CRC32 as 8 hex digits."""

    def transform_stream(self, reader, path, etl_args):
        crc = 0
        while True:
            chunk = reader.read(65536)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            yield chunk
        yield b"%08x" % crc


server = Crc()
app = server.app
