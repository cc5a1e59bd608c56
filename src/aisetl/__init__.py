"""aisetl: build, test and run AIStore ETL transformation servers.

A drop-in replacement for ``aistore.sdk.etl.webserver``: subclass a server, override
``transform`` (or ``transform_stream``, or ``transform_batch`` to be fed batches), start it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aisetl.batch import Item
from aisetl.config import ConfigError
from aisetl.server import ETLServer, TransformError

if TYPE_CHECKING:
    from aisetl.fastapi_server import FastAPIServer
    from aisetl.flask_server import FlaskServer
    from aisetl.http_multi_threaded_server import HTTPMultiThreadedServer

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ETLServer",
    "FastAPIServer",
    "FlaskServer",
    "HTTPMultiThreadedServer",
    "Item",
    "TransformError",
    "__version__",
]

_LAZY = {
    "FastAPIServer": "aisetl.fastapi_server",
    "FlaskServer": "aisetl.flask_server",
    "HTTPMultiThreadedServer": "aisetl.http_multi_threaded_server",
}


def __getattr__(name: str) -> Any:
    """Import a framework server only when it is asked for (each needs its own extras)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aisetl' has no attribute {name!r}")
