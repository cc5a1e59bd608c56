"""The server's own HTTP client: GETs from the target (hpull) and PUTs to the next hop.

One connection pool per process (created lazily, so worker processes forked after the
server was built each get their own), keep-alive, TLS and token settings from the environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import cast

import urllib3
from urllib3.exceptions import (
    NewConnectionError,
    ProtocolError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3TimeoutError,
)

from aisetl.config import Settings
from aisetl.per_process import PerProcess

#: Errors after which no response arrived: safe to retry against a replayable source.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    NewConnectionError,  # refused, unreachable (retried: an ETL stage may be restarting)
    ProtocolError,  # reset, aborted, closed without a response
    Urllib3TimeoutError,  # connect or read timeout
    ConnectionError,
)

#: An ETL secret in a URL, alone or inside free text (it ends where the URL ends).
_SECRET_IN_URL = re.compile(r"(/v1/etl/_object/[^/?#\s\"'<>]+/)[^/?#\s\"'<>&]+")


def redact_url(text: str) -> str:
    """Hide the ETL secret carried in ``AIS_TARGET_URL``-based URLs (it is a credential), in a
    URL or in a message that quotes one."""
    return _SECRET_IN_URL.sub(r"\1***", text)


def describe_error(exc: BaseException) -> str:
    """A one-line description of a transport error, with any ETL secret redacted."""
    text = str(exc) or type(exc).__name__
    return redact_url(f"{type(exc).__name__}: {text}")


class OutboundClient:
    """Pooled HTTP/1.1 client for hpull GETs and direct-put PUTs."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pools: PerProcess[urllib3.PoolManager] = PerProcess(self._build)
        headers = {}
        if settings.authn_token:
            headers["Authorization"] = f"Bearer {settings.authn_token}"
        self._headers = headers
        self._timeout = urllib3.Timeout(
            connect=settings.hop_connect_timeout, read=settings.hop_read_timeout
        )

    def _manager(self) -> urllib3.PoolManager:
        return self._pools.get()

    def _build(self) -> urllib3.PoolManager:
        s = self._settings
        tls: dict[str, object] = {}
        if s.skip_verify:
            tls["cert_reqs"] = "CERT_NONE"
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        else:
            tls["cert_reqs"] = "CERT_REQUIRED"
            if s.client_ca:
                tls["ca_certs"] = s.client_ca
        if s.client_cert and s.client_key:
            tls["cert_file"] = s.client_cert
            tls["key_file"] = s.client_key
        return urllib3.PoolManager(
            num_pools=max(8, s.max_connections // 8),
            maxsize=s.max_keepalive_connections,
            block=False,
            retries=False,
            timeout=self._timeout,
            headers=self._headers,
            **tls,
        )

    def get(self, url: str) -> urllib3.BaseHTTPResponse:
        """Start a GET; the caller reads (or streams) the body and releases the response."""
        return self._manager().request(
            "GET", url, preload_content=False, decode_content=False, redirect=False
        )

    def put(
        self,
        url: str,
        body: bytes | Iterable[bytes],
        headers: dict[str, str],
        read_timeout: float | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send a PUT: bytes with ``Content-Length``, an iterable as a chunked body.

        ``read_timeout`` (seconds) replaces ``AISETL_HOP_READ_TIMEOUT`` for this request.
        """
        chunked = not isinstance(body, (bytes, bytearray, memoryview))
        timeout = self._timeout
        if read_timeout is not None and read_timeout < self._settings.hop_read_timeout:
            timeout = urllib3.Timeout(connect=self._settings.hop_connect_timeout, read=read_timeout)
        return self._manager().request(
            "PUT",
            url,
            body=cast("bytes", body),
            headers={**self._headers, **headers},
            chunked=chunked,
            timeout=timeout,
            preload_content=False,
            decode_content=False,
            redirect=False,
        )
