"""What failed objects have in common: identical errors grouped, each with its traceback tail."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: The suffix every aisetl error message ends with (``<what went wrong> (object: <path>)``).
_OBJECT_SUFFIX = re.compile(r"\s*\(object: [^()]*\)\s*$")
#: A target's per-attempt timeout, as the Go HTTP client words it.
_HTTP_TIMEOUT = re.compile(r'^(?:Put|Get) ".*": context deadline exceeded')
_WS_TIMEOUT = re.compile(r"^no ws reply within ")
#: A line that starts a new log record (ours, uvicorn's, gunicorn's).
_LOG_RECORD = re.compile(r"^(?:\d{4}-\d\d-\d\d[ T]|\[\d{4}-\d\d-\d\d |INFO:|WARNING:|ERROR:)")
#: Traceback lines quoted per distinct error.
TRACEBACK_LINES = 6


@dataclass(frozen=True)
class Limit:
    """A time limit of a run and where its value came from, for messages."""

    flag: str  # "--obj-timeout", "--timeout"
    seconds: float
    given: bool  # set on the command line (else the spec's or the default)
    spec_field: str = "obj_timeout"
    from_spec: bool = False

    def describe(self) -> str:
        """``--obj-timeout 10 s`` / ``obj_timeout 10 s of etl_spec.yaml (--obj-timeout ...)``."""
        if self.given:
            return f"{self.flag} {self.seconds:g} s"
        if self.from_spec:
            return (
                f"{self.spec_field} {self.seconds:g} s of the server's etl_spec.yaml "
                f"(raise it there or pass {self.flag})"
            )
        return f"the default {self.flag} {self.seconds:g} s (pass {self.flag} to raise it)"


def explain_timeout(message: str, limit: Limit) -> str:
    """Say which limit a target-side timeout hit; other messages are returned unchanged."""
    if _HTTP_TIMEOUT.match(message):
        return f"timed out: exceeded {limit.describe()} ({message})"
    if _WS_TIMEOUT.match(message):
        return f"timed out: exceeded {limit.describe()} (no ws reply in time)"
    return message


def error_key(message: str, names: Sequence[str]) -> str:
    """``message`` without what is particular to one object, so identical errors match."""
    key = _OBJECT_SUFFIX.sub("", message)
    for name in sorted((n for n in names if n), key=len, reverse=True):
        key = key.replace(name, "<object>")
    return key


@dataclass
class ErrorGroup:
    """Failed objects that share one error."""

    reason: str  # the message with what is particular to one object left out
    example: str  # the first object's own message
    objects: list[str] = field(default_factory=list)
    traceback: str = ""

    @property
    def count(self) -> int:
        """How many objects failed this way."""
        return len(self.objects)


def group_errors(failures: Iterable[tuple[str, str, Sequence[str]]]) -> list[ErrorGroup]:
    """Group ``(object, message, names of the object)`` by :func:`error_key`, largest first."""
    groups: dict[str, ErrorGroup] = {}
    for obj, message, names in failures:
        key = error_key(message, names)
        groups.setdefault(key, ErrorGroup(key, message)).objects.append(obj)
    for group in groups.values():  # in name order, whichever failed first
        group.objects.sort()
    return sorted(groups.values(), key=lambda g: -g.count)


def traceback_for(log: str, path: str, lines: int = TRACEBACK_LINES) -> str:
    """The last ``lines`` lines of the traceback a server logged for object ``path``."""
    # the servers log a failed object as "<comm> <path> failed (<status>): ..." (HTTP) or
    # "ws task for '<path>' failed (<status>): ..." (ws), each followed by its traceback
    found = re.search(rf"(?:^|\s)(?:{re.escape(path)}|{re.escape(repr(path))}) failed \(\d+\)", log)
    if found is None:
        return ""
    at = found.start()
    body: list[str] = []
    for line in log[at:].splitlines()[1:]:
        if _LOG_RECORD.match(line):
            break
        body.append(line.rstrip())
    if not body or not body[0].startswith("Traceback"):
        return ""
    return "\n".join(body[-lines:])


def attach_tracebacks(groups: list[ErrorGroup], logs: Sequence[str], bucket: str) -> None:
    """Give each group the traceback of its first object found in the servers' logs."""
    for group in groups:
        for obj in group.objects[:20]:
            # hpush and hpull pass "bucket/object" as the path, ws only the object's name
            paths = (f"{bucket}/{obj}", obj)
            found = next(
                (tb for log in logs for path in paths if (tb := traceback_for(log, path))), ""
            )
            if found:
                group.traceback = found
                break
