"""The user contract: :class:`ETLServer`, the transform methods and :class:`TransformError`."""

from __future__ import annotations

import inspect
import logging
import resource
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO

from aisetl.config import Settings
from aisetl.protocol import sanitize_fqn


class TransformError(Exception):
    """Raise from a transform to answer with a chosen status and message, in every server.

    >>> raise TransformError(415, "expected a FLAC file")
    """

    def __init__(self, status: int, message: str) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"TransformError status must be 4xx or 5xx, got {status}")
        super().__init__(message)
        self.status = status
        self.message = message


def _raise_nofile_limit() -> None:
    """Raise the soft open-file limit to the hard limit (high concurrency needs sockets)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # pragma: no cover - platform without the limit
        pass


_LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


class ETLServer(ABC):
    """Base class of every transformation server.

    Subclass one of the framework servers (or this class, and pick the framework with
    ``aisetl serve --server``), override :meth:`transform` *or* :meth:`transform_stream`, and
    load models once in ``__init__`` after calling ``super().__init__()``.
    """

    def __init__(self) -> None:
        _raise_nofile_limit()
        self.settings = Settings.from_env()
        self.host_target: str = self.settings.target_url
        self.direct_put: bool = self.settings.direct_put
        self.direct_fqn: bool = self.settings.direct_fqn
        self.direct_put_retries: int = self.settings.direct_put_retries
        self.token: str | None = self.settings.authn_token
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT, stream=sys.stdout)
        self.logger = logging.getLogger(type(self).__name__)
        self.logger.setLevel(logging.INFO)

        cls = type(self)
        has_transform = cls.transform is not ETLServer.transform
        has_stream = cls.transform_stream is not ETLServer.transform_stream
        if not has_transform and not has_stream:
            raise TypeError(
                f"{cls.__name__} must override either transform() or transform_stream()"
            )
        #: True when the server streams (only ``transform_stream`` is overridden).
        self.use_streaming: bool = has_stream and not has_transform
        self.transform_is_async: bool = inspect.iscoroutinefunction(cls.transform)
        self.stream_is_async: bool = inspect.isasyncgenfunction(cls.transform_stream)

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        """Transform one whole object (buffered mode); may be ``async def``.

        ``data`` is the object's bytes, or its file path (``str``) when ``ETL_DIRECT_FQN`` is set
        and the target passed a local file. ``path`` is the object path, decoded, without a
        leading slash; ``etl_args`` the per-request argument string ("" when none).
        """
        raise NotImplementedError("Subclass must override either transform() or transform_stream()")

    def transform_stream(
        self, reader: BinaryIO, path: str, etl_args: str
    ) -> Iterator[bytes] | AsyncIterator[bytes]:
        """Transform one object as a stream: read from ``reader``, yield output chunks.

        Memory stays constant whatever the object size. May be an ``async`` generator.
        """
        raise NotImplementedError("Subclass must override either transform() or transform_stream()")

    def get_mime_type(self) -> str:
        """MIME type of transformed objects (``Content-Type`` of the reply)."""
        return "application/octet-stream"

    def sanitize_fqn(self, fqn: str) -> str:
        """Normalize an ``etl_fqn`` value to an absolute path (normalization, not confinement)."""
        return sanitize_fqn(fqn)

    @abstractmethod
    def start(self) -> None:
        """Serve on ``self.host:self.port`` until SIGTERM (blocking)."""
