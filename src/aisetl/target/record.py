"""A bounded log of what crossed the wire, for assertions in tests."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Record sides.
DRIVER = "driver"  # target -> ETL server HTTP requests
ENDPOINT = "endpoint"  # requests received by the target's own HTTP endpoint
WS = "ws"  # WebSocket frames between target and server


@dataclass
class Record:
    """One request/response exchange or one WebSocket message."""

    side: str
    target: str  # emulated target ID, e.g. "t0"
    method: str = ""  # HTTP method; for ws: "send" or "recv"
    uri: str = ""  # request-line target; for ws: the connection's URL
    headers: tuple[tuple[str, str], ...] = ()
    body_len: int = 0
    status: int = 0  # 0: no response (transport error or ws)
    response_headers: tuple[tuple[str, str], ...] = ()
    response_len: int = 0
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    head: bytes = b""  # exact request head bytes (driver side)
    opcode: str = ""  # ws: "binary", "text" or "close"
    data: bytes = b""  # ws: the control message (payload and replies are not kept)
    connection: int = 0  # ws: connection number within its pool
    attempt: int = 0  # driver: 1-based attempt number
    fault: str = ""  # endpoint: the fault that was applied, if any

    def header(self, name: str) -> str | None:
        """A request header's value (case-insensitive), or ``None``."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


class Recorder:
    """Thread-safe ring buffer of :class:`Record` (``maxlen=0`` disables recording)."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.maxlen = maxlen
        self._records: deque[Record] = deque(maxlen=max(maxlen, 1))
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether records are kept."""
        return self.maxlen > 0

    def add(self, record: Record) -> None:
        """Append a record (the oldest falls off when full)."""
        if self.maxlen > 0:
            with self._lock:
                self._records.append(record)

    def records(
        self,
        side: str | None = None,
        *,
        method: str | None = None,
        where: Callable[[Record], bool] | None = None,
    ) -> list[Record]:
        """A snapshot of the records, optionally filtered."""
        with self._lock:
            snapshot = list(self._records)
        return [
            rec
            for rec in snapshot
            if (side is None or rec.side == side)
            and (method is None or rec.method == method)
            and (where is None or where(rec))
        ]

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()
