"""What a server answers: a status, headers, and a body that is bytes or a stream of chunks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aisetl import drain
from aisetl.protocol import HEALTH_BODY

if TYPE_CHECKING:
    from aisetl.sources import Failure

TEXT_PLAIN = "text/plain; charset=utf-8"


@dataclass
class Reply:
    """An answer: ``stream`` (when set) replaces ``body`` and is sent chunk by chunk."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: Iterator[bytes] | None = None
    failure: Failure | None = None  # what this error answer is for (kept for the log)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as an ASGI server takes them: lower-case names, latin-1 bytes."""
        return [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers.items()
        ]

    def close(self) -> None:
        """Release what an unsent stream holds (a file, a connection)."""
        close = getattr(self.stream, "close", None)
        if callable(close):
            close()


def health_reply() -> Reply:
    """The answer to a readiness probe: 200 ``Running``, or 503 with the reason while draining."""
    reason = drain.reason()
    if reason is not None:
        text = (
            f"Draining after {reason}: finishing the objects in flight, then exiting; "
            "send new objects to another server"
        )
        return Reply(503, {"Content-Type": TEXT_PLAIN, "Connection": "close"}, text.encode())
    return Reply(200, {"Content-Type": TEXT_PLAIN}, HEALTH_BODY)


def failure_text(message: str, path: str | None) -> str:
    """The one error text of every server and transport: what went wrong, then the object."""
    return f"{message} (object: {path})" if path else message


def malformed_request_reply(status: int, detail: str, path: str | None = None) -> Reply:
    """The answer to a request the HTTP layer could not parse; the connection then closes."""
    message = failure_text(
        f"Malformed HTTP request: {detail}; nothing was processed, send a valid HTTP/1.1 request",
        path,
    )
    headers = {"Content-Type": TEXT_PLAIN, "Connection": "close"}
    return Reply(status, headers, message.encode("utf-8", "replace"))
