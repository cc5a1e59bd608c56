"""A value built once in each process: again in a forked worker, once even when threads ask
at once (connection pools, loop threads and flows must not cross a fork)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``build()``'s value for the calling process, built on first use there."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: tuple[int, T] | None = None

    def get(self) -> T:
        """The value of the calling process."""
        pid = os.getpid()
        current = self._value
        if current is None or current[0] != pid:
            with self._lock:
                current = self._value
                if current is None or current[0] != pid:
                    current = self._value = (pid, self._build())
        return current[1]
