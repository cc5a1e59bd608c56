"""The benchmark's transforms on the reference SDK (``aistore[etl]``), run by its interpreter.

``BENCH_FRAMEWORK`` (``fastapi``, ``flask`` or ``http``) picks the base class and
``BENCH_TRANSFORM`` the transform. uvicorn imports ``reference_app:server.app`` and gunicorn
``reference_app:app`` (the same object);
``python reference_app.py PORT`` runs the standard-library server with ``start()``, as the
reference runtime image does.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import transforms  # this folder (not a package) in the reference interpreter

FRAMEWORK = os.environ.get("BENCH_FRAMEWORK", "fastapi")
TRANSFORM = os.environ.get("BENCH_TRANSFORM", "echo")

if FRAMEWORK == "fastapi":
    from aistore.sdk.etl.webserver.fastapi_server import FastAPIServer as Base
elif FRAMEWORK == "flask":
    from aistore.sdk.etl.webserver.flask_server import FlaskServer as Base
else:
    from aistore.sdk.etl.webserver.http_multi_threaded_server import (
        HTTPMultiThreadedServer as Base,
    )


if TRANSFORM == "stream":

    class Server(Base):  # type: ignore[misc,valid-type]
        """Streaming echo."""

        def transform_stream(self, reader, path, etl_args):  # type: ignore[no-untyped-def]
            yield from transforms.stream_echo(reader)

else:
    _function = transforms.BUFFERED[TRANSFORM]

    class Server(Base):  # type: ignore[misc,valid-type,no-redef]
        """One of the buffered transforms."""

        def transform(self, data, path, etl_args):  # type: ignore[no-untyped-def]
            if isinstance(data, str):  # ETL_DIRECT_FQN hands over a path
                with open(data, "rb") as file:
                    data = file.read()
            return _function(data)


_port = int(sys.argv[1]) if __name__ == "__main__" and len(sys.argv) > 1 else 8000
server = Server(host="127.0.0.1", port=_port)
app = getattr(server, "app", None)  # gunicorn takes a module attribute, not server.app

if __name__ == "__main__":
    server.start()
