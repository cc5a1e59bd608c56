"""The request edge: the neutral head every adapter builds, and the first decisions on it.

An adapter turns its framework's request into a :class:`RequestHead` (method, raw path, raw
query, a case-insensitive multi-valued header view, declared length) and asks
:func:`admit` what to do. The answer is either a reply to send at once (a wrong method, a body
over the limit, a name the target mangled) or an :class:`ObjectRequest` with the way its body
is to be read. Which copy of a repeated header counts, which methods and sizes are accepted
and every error text are decided here, once, for every server.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import NamedTuple

from aisetl.config import Settings
from aisetl.protocol import (
    DOWNLOAD_PATH,
    HEADER_NODE_URL,
    QPARAM_ETL_ARGS,
    QPARAM_ETL_FQN,
    QPARAM_LATEST_VER,
    QPARAM_OBJECT_TO,
    QPARAM_ORIGINAL_URL,
    WS_KEY_ETL_ARGS,
    WS_KEY_FQN,
    WS_KEY_PATH,
    WS_KEY_PIPELINE,
    decode_path,
    mangled_name,
    parse_bool,
    parse_query,
)
from aisetl.sources import BodyTooLarge, Failure, check_fits_in_memory

_OBJECT_METHODS = ("GET", "PUT")
#: The Prometheus scrape path, answered beside ``/health`` (never an object).
METRICS_PATH = "/metrics"


def is_metrics_request(method: str, raw_path: str) -> bool:
    """A scrape: ``GET`` or ``HEAD /metrics``, answered (or refused, when the metrics are off)
    before admission. ``PUT /metrics`` is an object named ``metrics``, as for ``/health``."""
    return raw_path == METRICS_PATH and method in ("GET", "HEAD")


class Headers:
    """Request headers, case-insensitive and multi-valued; :meth:`get` is the first copy.

    (Go's ``Header.Get`` reads the first copy too, so a repeated ``Ais-Node-Url`` means the
    same in every server.)
    """

    __slots__ = ("_first", "_items")

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = [(name.lower(), value) for name, value in items]
        self._first = dict(reversed(self._items))  # reversed: the first copy is the one kept

    @classmethod
    def from_raw(cls, items: Iterable[tuple[bytes, bytes]]) -> Headers:
        """From ASGI-style ``(name, value)`` byte pairs."""
        headers = cls.__new__(cls)  # (decoded and lower-cased in one pass)
        headers._items = [
            (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in items
        ]
        headers._first = dict(reversed(headers._items))
        return headers

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or ``None``."""
        return self._first.get(name.lower())

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in the order they arrived."""
        key = name.lower()
        return [value for item, value in self._items if item == key]


# The per-request records are named tuples: immutable like frozen dataclasses, and built
# several times faster (every admitted object builds three of them).


class RequestHead(NamedTuple):
    """What an adapter knows of a request before reading its body."""

    method: str
    raw_path: str  # as sent, still percent-escaped
    raw_query: str
    headers: Headers
    content_length: int | None = None  # declared; None when absent or invalid
    chunked: bool = False  # the body is chunked (Transfer-Encoding)


class ObjectRequest(NamedTuple):
    """One object to transform, as the target described it."""

    path: str
    etl_args: str = ""
    fqn: str = ""
    pipeline: str | None = None
    from_target: bool = False  # hpull without FQN: fetch the bytes from the target
    latest_ver: bool = False  # hpull: the client asked for the latest remote version

    @classmethod
    def from_http(
        cls,
        method: str,
        raw_path: str,
        query: str,
        node_url: str | None,
        path: str | None = None,
    ) -> ObjectRequest:
        """Build from an HTTP request: method, raw (still escaped) path, raw query, hop header
        (``path``: the raw path already decoded, when the caller has it)."""
        params = parse_query(query) if query else {}
        return cls(
            path=decode_path(raw_path) if path is None else path,
            etl_args=params.get(QPARAM_ETL_ARGS, "").strip(),
            fqn=params.get(QPARAM_ETL_FQN, "").strip(),
            pipeline=node_url,
            from_target=method == "GET",
            latest_ver=parse_bool(params.get(QPARAM_LATEST_VER)),
        )

    @classmethod
    def from_ws(cls, control: dict[str, str]) -> ObjectRequest:
        """Build from a decoded WebSocket control message."""
        return cls(
            path=control[WS_KEY_PATH],
            etl_args=control[WS_KEY_ETL_ARGS].strip(),
            fqn=control[WS_KEY_FQN].strip(),
            pipeline=control[WS_KEY_PIPELINE],
        )


class DownloadRequest(NamedTuple):
    """``POST /download``: fetch ``url`` and transform it as object ``path`` (PROTOCOL.md §13)."""

    url: str
    path: str
    etl_args: str = ""


class Body(enum.Enum):
    """How an adapter should read an admitted request's body."""

    NONE = "none"  # no body (GET, POST /download)
    BYTES = "bytes"  # read it whole
    STREAM = "stream"  # hand the transform a reader


class Admitted(NamedTuple):
    """A request the flow will handle; ``body`` says how to read what follows the head."""

    request: ObjectRequest | DownloadRequest
    body: Body


class Refused(NamedTuple):
    """A request answered at once: ``failure`` for ``path``; ``close`` when a body may follow."""

    failure: Failure
    path: str
    close: bool = False


def admit(head: RequestHead, settings: Settings, streaming: bool) -> Admitted | Refused:
    """Decide what a request is, whether it is accepted, and how its body is to be read."""
    if head.method == "POST" and head.raw_path == DOWNLOAD_PATH:
        return _admit_download(head)
    path = decode_path(head.raw_path)
    if head.method not in _OBJECT_METHODS:
        failure = Failure(
            405,
            f"Method {head.method} is not supported: send PUT (hpush) or GET (hpull)",
            {"Allow": "GET, PUT"},
        )
        return Refused(failure, path, close=True)
    mangled = mangled_name(path, head.raw_query)
    if mangled is not None:
        return Refused(Failure(400, mangled), path, close=head.method == "PUT")
    request = ObjectRequest.from_http(
        head.method, head.raw_path, head.raw_query, head.headers.get(HEADER_NODE_URL), path
    )
    if head.method == "GET":
        return Admitted(request, Body.NONE)
    limit = settings.max_body_size
    length = head.content_length
    try:
        if limit and length is not None and length > limit:
            raise BodyTooLarge(limit)
        if streaming and not request.fqn:
            return Admitted(request, Body.STREAM)
        if length is not None and not head.chunked:
            check_fits_in_memory(length)
    except Failure as failure:
        return Refused(failure, request.path, close=True)
    return Admitted(request, Body.BYTES)


def _admit_download(head: RequestHead) -> Admitted | Refused:
    params = parse_query(head.raw_query)
    url = params.get(QPARAM_ORIGINAL_URL, "").strip()
    path = params.get(QPARAM_OBJECT_TO, "").strip()
    missing = [
        name for name, value in ((QPARAM_ORIGINAL_URL, url), (QPARAM_OBJECT_TO, path)) if not value
    ]
    if missing:
        failure = Failure(
            400,
            f"POST {DOWNLOAD_PATH} needs the query parameter(s) {', '.join(missing)}: "
            f"{DOWNLOAD_PATH}?{QPARAM_ORIGINAL_URL}=<URL>&{QPARAM_OBJECT_TO}=<object name>",
        )
        return Refused(failure, path, close=True)
    if not url.startswith(("http://", "https://")):
        failure = Failure(400, f"{QPARAM_ORIGINAL_URL} {url!r} is not an http:// or https:// URL")
        return Refused(failure, path, close=True)
    etl_args = params.get(QPARAM_ETL_ARGS, "").strip()
    return Admitted(DownloadRequest(url, path, etl_args), Body.NONE)


def content_length(value: str | bytes | None) -> int | None:
    """A declared ``Content-Length``, when it is a valid one."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    return int(text) if text.isdigit() and text.isascii() else None
