"""Faults that an emulated endpoint injects into the next matching requests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: Fault kinds.
RESET = "reset"  # RST (SO_LINGER 0 + close) right after the request head
RESET_MID_BODY = "reset-mid-body"  # RST after part of the request body arrived
CLOSE = "close"  # read the request, then close without any response (EOF)
DELAY = "delay"  # wait, then answer normally
RESPOND = "respond"  # answer with a given status, body and headers


@dataclass
class Fault:
    """One fault rule: what to do, to which requests, and how many more times."""

    kind: str
    count: int = 1
    method: str | None = None  # match this HTTP method only
    path: str | None = None  # match request targets that contain this text
    seconds: float = 0.0  # DELAY
    status: int = 0  # RESPOND
    body: bytes = b""  # RESPOND
    headers: Mapping[str, str] = field(default_factory=dict)  # RESPOND
    applied: int = 0

    def matches(self, method: str, uri: str) -> bool:
        """Whether this rule applies to a request."""
        return (self.method is None or self.method == method) and (
            self.path is None or self.path in uri
        )


class Faults:
    """The fault plan of one endpoint; every method is safe to call from any thread.

    Each rule applies to the next ``count`` matching requests, in the order rules were added.
    """

    def __init__(self, refuse_hook: Callable[[float], None] | None = None) -> None:
        self._rules: list[Fault] = []
        self._lock = threading.Lock()
        self._refuse_hook = refuse_hook

    def add(self, fault: Fault) -> Fault:
        """Add a rule and return it (its ``applied`` counter shows how often it fired)."""
        if fault.count < 1:
            raise ValueError("a fault must apply to at least one request")
        with self._lock:
            self._rules.append(fault)
        return fault

    def reset(
        self,
        count: int = 1,
        *,
        mid_body: bool = False,
        method: str | None = None,
        path: str | None = None,
    ) -> Fault:
        """Reset the connection (RST) after the request head, or partway through the body."""
        kind = RESET_MID_BODY if mid_body else RESET
        return self.add(Fault(kind, count, method, path))

    def close(self, count: int = 1, *, method: str | None = None, path: str | None = None) -> Fault:
        """Read the request, then close the connection without answering (EOF)."""
        return self.add(Fault(CLOSE, count, method, path))

    def delay(
        self,
        seconds: float,
        count: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> Fault:
        """Wait ``seconds`` before answering normally."""
        return self.add(Fault(DELAY, count, method, path, seconds=seconds))

    def respond(
        self,
        status: int,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        count: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> Fault:
        """Answer with ``status``, ``body`` and ``headers`` instead of serving the request."""
        data = body.encode() if isinstance(body, str) else body
        return self.add(
            Fault(RESPOND, count, method, path, status=status, body=data, headers=headers or {})
        )

    def refuse(self, seconds: float) -> None:
        """Stop listening for ``seconds``: connection attempts are refused meanwhile."""
        if self._refuse_hook is None:
            raise RuntimeError("this endpoint cannot refuse connections")
        self._refuse_hook(seconds)

    def take(self, method: str, uri: str) -> Fault | None:
        """The rule to apply to this request (consuming one use), or ``None``."""
        if not self._rules:
            return None
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.matches(method, uri):
                    rule.count -= 1
                    rule.applied += 1
                    if rule.count <= 0:
                        del self._rules[index]
                    return rule
        return None

    @property
    def pending(self) -> list[Fault]:
        """Rules that still have uses left."""
        with self._lock:
            return list(self._rules)

    def clear(self) -> None:
        """Drop every rule."""
        with self._lock:
            self._rules.clear()
