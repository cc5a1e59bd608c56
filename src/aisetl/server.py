"""The user contract: :class:`ETLServer`, the transform methods and :class:`TransformError`."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import resource
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Generic, TypeVar, overload

from aisetl import logs
from aisetl.config import Settings
from aisetl.protocol import sanitize_fqn

if TYPE_CHECKING:
    from aisetl.batch import Item


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

V = TypeVar("V")


class _Setting(Generic[V]):
    """An attribute of the server that reads and sets one field of its :class:`Settings`.

    Setting it replaces ``server.settings`` (so the flow, built when serving starts, uses the
    value); once serving started it raises, since the value could no longer take effect.
    """

    def __init__(self, field: str, convert: Callable[[Any], V]) -> None:
        self._field = field
        self._convert = convert

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, server: None, owner: type) -> _Setting[V]: ...
    @overload
    def __get__(self, server: ETLServer, owner: type) -> V: ...
    def __get__(self, server: ETLServer | None, owner: type) -> V | _Setting[V]:
        if server is None:
            return self
        value: V = getattr(server.settings, self._field)
        return value

    def __set__(self, server: ETLServer, value: V) -> None:
        if getattr(server, "_settings_frozen", False):
            raise AttributeError(
                f"{self._name} can only be changed before the server serves its first object "
                "(set it in __init__, after super().__init__())"
            )
        changed: dict[str, Any] = {self._field: self._convert(value)}
        server.settings = dataclasses.replace(server.settings, **changed)


def _retries(value: Any) -> int:
    if int(value) < 0:
        raise ValueError(f"direct_put_retries must not be negative, not {value}")
    return int(value)


class ETLServer(ABC):
    """Base class of every transformation server.

    Subclass one of the framework servers (or this class, and pick the framework with
    ``aisetl serve --server``), override :meth:`transform` *or* :meth:`transform_stream`, and
    load models once in ``__init__`` after calling ``super().__init__()``.
    """

    #: Communication types this server can serve (see :mod:`aisetl.comm`).
    comm_types: ClassVar[tuple[str, ...]] = ("hpush", "hpull")
    #: With :meth:`transform_batch`: the most objects in one batch (``AISETL_MAX_BATCH_SIZE``).
    max_batch_size: ClassVar[int] = 32
    #: With :meth:`transform_batch`: the longest an object waits for a batch to fill, in
    #: seconds (``AISETL_MAX_BATCH_DELAY``).
    max_batch_delay: ClassVar[float] = 0.005
    #: With :meth:`transform_batch`: batches that may run at once in one worker process
    #: (``AISETL_BATCH_CONCURRENCY``); one model, one batch at a time by default.
    batch_concurrency: ClassVar[int] = 1

    def __init__(self) -> None:
        _raise_nofile_limit()
        self.settings = Settings.from_env()
        self._settings_frozen = False
        logs.configure(self.settings)
        self.logger = logging.getLogger(type(self).__name__)
        self.logger.setLevel(logging.INFO)

        cls = type(self)
        has_transform = cls.transform is not ETLServer.transform
        has_stream = cls.transform_stream is not ETLServer.transform_stream
        has_batch = cls.transform_batch is not ETLServer.transform_batch
        if not has_transform and not has_stream and not has_batch:
            raise TypeError(
                f"{cls.__name__} must override transform(), transform_stream() or transform_batch()"
            )
        #: True when buffered objects are fed to ``transform_batch`` in batches.
        self.batched: bool = has_batch
        #: True when the server streams (only ``transform_stream`` is overridden).
        self.use_streaming: bool = has_stream and not has_transform and not has_batch
        self.transform_is_async: bool = inspect.iscoroutinefunction(cls.transform)
        self.batch_is_async: bool = inspect.iscoroutinefunction(cls.transform_batch)
        self.stream_is_async: bool = inspect.isasyncgenfunction(cls.transform_stream)

    # --- settings a subclass may change in __init__ (the reference's attribute names) ----------

    host_target = _Setting[str]("target_url", lambda value: str(value).rstrip("/"))
    """``AIS_TARGET_URL``: the target's ETL object endpoint (a credential: never log it)."""
    direct_put = _Setting[bool]("direct_put", bool)
    """``direct_put`` / ``DIRECT_PUT`` (informational: the pipeline header decides)."""
    direct_fqn = _Setting[bool]("direct_fqn", bool)
    """``ETL_DIRECT_FQN``: buffered transforms get a local file's path instead of bytes."""
    direct_put_retries = _Setting[int]("direct_put_retries", _retries)
    """``AIS_DIRECT_PUT_RETRIES``: extra attempts of a direct put after a transient failure."""
    token = _Setting["str | None"]("authn_token", lambda value: value or None)
    """``AIS_AUTHN_TOKEN``: sent as a bearer token on every outbound request."""

    def freeze_settings(self) -> None:
        """Called when serving starts: from then on the settings above are read-only."""
        self._settings_frozen = True

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        """Transform one whole object (buffered mode); may be ``async def``.

        ``data`` is the object's bytes, or its file path (``str``) when ``ETL_DIRECT_FQN`` is set
        and the target passed a local file. ``path`` is the object path, decoded, without a
        leading slash; ``etl_args`` the per-request argument string ("" when none).
        """
        raise NotImplementedError("Subclass must override either transform() or transform_stream()")

    def transform_batch(self, items: list[Item]) -> Sequence[bytes | str | Exception]:
        """Transform a batch of whole objects at once; may be ``async def``.

        Override it instead of :meth:`transform` to be fed batches: the objects that arrive
        together at one worker process (over every communication type) are collected into
        lists of up to ``max_batch_size`` :class:`~aisetl.Item` (``data``, ``path``,
        ``etl_args``), waiting at most ``max_batch_delay`` seconds for a batch to fill. Return
        one result per item, in order: its bytes (or text), or an exception that fails only
        that object (a :class:`TransformError` keeps its status and message). Runs on a worker
        thread, never on an event loop.
        """
        raise NotImplementedError("Subclass must override transform_batch() to be fed batches")

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
