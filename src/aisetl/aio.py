"""What an event-loop server lends the flow: non-blocking HTTP and a thread pool.

The FastAPI server fetches hpull objects from the target and delivers direct puts on its
event loop with a small keep-alive HTTP/1.1 client (``httptools``), instead of a blocking
client on a thread: no thread hand-off and far less Python per request. Only plain
``http://`` peers take this path; TLS peers keep the pooled blocking client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aisetl.config import Settings
from aisetl.http_client import HTTPClient, Response, TransportError

T = TypeVar("T")


class TransportFailed(Exception):
    """No complete answer arrived; ``transient`` when a retry may succeed (§8.8)."""

    def __init__(self, message: str, transient: bool, after_headers: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.after_headers = after_headers


class LoopIO:
    """Non-blocking HTTP (plain ``http://`` only) and a thread pool, for one event loop."""

    def __init__(self, settings: Settings, run_blocking: Callable[..., Awaitable[Any]]) -> None:
        self._settings = settings
        self._run_blocking = run_blocking
        self._client = HTTPClient(
            max_idle_per_host=settings.max_keepalive_connections,
            idle_timeout=settings.keepalive_expiry,
            connect_timeout=settings.hop_connect_timeout,
        )
        self._headers = (
            {"Authorization": f"Bearer {settings.authn_token}"} if settings.authn_token else {}
        )

    @staticmethod
    def reaches(url: str) -> bool:
        """Whether this client can reach ``url`` (plain HTTP)."""
        return url.startswith("http://")

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on the thread pool."""
        result: T = await self._run_blocking(func, *args)
        return result

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One request; raises :class:`TransportFailed` when no complete answer arrives.

        ``timeout`` (seconds) replaces ``AISETL_HOP_READ_TIMEOUT`` for this request.
        """
        try:
            return await self._client.request(
                method,
                url,
                headers={**self._headers, **(headers or {})},
                body=body,
                timeout=self._settings.hop_read_timeout if timeout is None else timeout,
            )
        except TransportError as exc:
            raise TransportFailed(
                str(exc), transient=not exc.after_headers, after_headers=exc.after_headers
            ) from exc

    async def close(self) -> None:
        """Close every connection."""
        await self._client.close()
