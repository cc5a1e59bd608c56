"""Servers that add routes of their own to ``.app`` (each needs its framework installed)."""

from __future__ import annotations

from fastapi import Response

from aisetl.fastapi_server import FastAPIServer
from aisetl.flask_server import FlaskServer

METRICS = b"objects_total 0\n"


class FastAPIWithRoutes(FastAPIServer):
    """Upper-cases objects and serves ``GET /metrics`` itself."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8000) -> None:
        super().__init__(host=host, port=port)

        @self.app.get("/metrics")
        def metrics() -> Response:
            return Response(METRICS, media_type="text/plain")

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        assert isinstance(data, bytes)
        return data.upper()


class FlaskWithRoutes(FlaskServer):
    """Upper-cases objects and serves ``GET /metrics`` itself."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8000) -> None:
        super().__init__(host=host, port=port)
        self.app.add_url_rule("/metrics", "metrics", lambda: METRICS)

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        assert isinstance(data, bytes)
        return data.upper()
