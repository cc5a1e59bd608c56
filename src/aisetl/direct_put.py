"""Delivery of a result to the next hop (direct put / pipeline), with the retry policy.

The decisions are made once, in :class:`Delivery` (the URL, how many attempts, what each
outcome means: retry after a delay, or answer upstream) and :func:`answer_upstream` (how a
hop's response becomes this server's answer). Two drivers run them: :meth:`DirectPut.deliver`
on a thread with the pooled blocking client (any body, TLS peers), and
:meth:`DirectPut.deliver_async` on an event loop (buffered bodies, plain-HTTP peers). They
differ only in how they wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import urllib3

from aisetl import metrics
from aisetl.aio import LoopIO, TransportFailed
from aisetl.config import Settings
from aisetl.deadline import Deadline, DeadlineExceeded
from aisetl.outbound import TRANSIENT_ERRORS, OutboundClient, describe_error, redact_url
from aisetl.protocol import (
    HEADER_DIRECT_PUT_LENGTH,
    HEADER_EMPTY_RESULT,
    HEADER_ETL_RETRY_REASON,
    HEADER_NODE_URL,
    RETRY_REASON_DIRECT_PUT_TRANSIENT,
    compose_direct_put_url,
    direct_put_headers,
    interpret_hop_response,
    is_target_hop,
    parse_bool,
    retry_delay,
)
from aisetl.reply import Reply
from aisetl.sources import READ_CHUNK, Failure

#: How much of a hop's error body is passed back upstream.
_ERROR_BODY_LIMIT = 64 * 1024


def hop_allowed(hop: str, allow: tuple[str, ...]) -> bool:
    """Whether the opt-in hop allow-list (``AISETL_HOP_ALLOW``) admits this hop."""
    if not allow:
        return True
    parts = urlsplit(hop)
    host = parts.hostname or ""
    candidates = {host, parts.netloc}
    return any(entry in candidates for entry in allow)


class HopResponse(Protocol):
    """A hop's answer as :func:`answer_upstream` reads it (status and head already in)."""

    status: int

    def header(self, name: str) -> str | None:
        """A response header (case-insensitive)."""

    def read(self, size: int | None = None) -> bytes:
        """Up to ``size`` more body bytes (all with ``None``); raises when reading fails."""

    def release(self, drain: bool = False) -> None:
        """Give the connection back (after reading what is left when ``drain``)."""


@dataclass
class _Buffered:
    """A response whose body is already in memory (the event loop's client)."""

    status: int
    _header: Callable[[str], str | None]
    _body: bytes

    def header(self, name: str) -> str | None:
        return self._header(name)

    def read(self, size: int | None = None) -> bytes:
        data, self._body = (
            (self._body, b"") if size is None else (self._body[:size], self._body[size:])
        )
        return data

    def release(self, drain: bool = False) -> None:
        self._body = b""


class _Pooled:
    """A urllib3 response read as it arrives (the blocking client)."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self.status = response.status

    def header(self, name: str) -> str | None:
        value = self._response.headers.get(name)
        return None if value is None else str(value)

    def read(self, size: int | None = None) -> bytes:
        return self._response.read(size)

    def release(self, drain: bool = False) -> None:
        if drain:
            self._response.drain_conn()
        self._response.release_conn()


@dataclass(frozen=True)
class Retry:
    """Try again after ``delay`` seconds."""

    delay: float


def answer_upstream(
    response: HopResponse, sent: int, shown: str, relay_stream: bool, logger: logging.Logger
) -> Reply:
    """This server's answer for a hop's response (PROTOCOL.md §8.6; the one mapping)."""
    try:
        first = response.read(READ_CHUNK)
    except Exception as exc:
        response.release()
        raise Failure(502, f"Reading the answer of {shown} failed: {describe_error(exc)}") from exc
    outcome = interpret_hop_response(
        response.status,
        body_empty=not first,
        hop_length=response.header(HEADER_DIRECT_PUT_LENGTH),
        bytes_sent=sent,
        empty_result=parse_bool(response.header(HEADER_EMPTY_RESULT)),
    )
    if not outcome.relay_body:
        response.release(drain=True)
        return Reply(204, direct_put_headers(outcome.direct_put_length))
    headers = {HEADER_EMPTY_RESULT: "true"} if not first and outcome.status == 200 else {}
    if outcome.status >= 300:
        rest = response.read(_ERROR_BODY_LIMIT) if first else b""
        response.release(drain=True)
        reason = response.header(HEADER_ETL_RETRY_REASON)
        if reason:  # a downstream stage asks for a resend: pass it on (§8.8)
            headers[HEADER_ETL_RETRY_REASON] = reason
        # (logged once, with the hop's text, when the object ends)
        return Reply(outcome.status, headers, first + rest)
    if relay_stream:
        return Reply(outcome.status, headers, stream=_relay(first, response))
    try:
        data = first + response.read()
    except Exception as exc:
        raise Failure(502, f"Reading the answer of {shown} failed: {describe_error(exc)}") from exc
    finally:
        response.release()
    return Reply(outcome.status, headers, data)


class Delivery:
    """One result on its way to one hop: the address, and the decision after each attempt."""

    def __init__(
        self,
        settings: Settings,
        logger: logging.Logger,
        hop: str,
        rest: str,
        path: str,
        etl_args: str,
        replayable: bool,
        observer: metrics.Observer = metrics.NULL,
        deadline: Deadline | None = None,
    ) -> None:
        try:
            self.url = compose_direct_put_url(hop, settings.target_url, path, etl_args)
        except UnicodeEncodeError as exc:  # a lone surrogate, from a ws control message
            raise Failure(
                400, f"The object name or etl_args cannot be sent on to hop {hop!r}: {exc}"
            ) from None
        except ValueError as exc:
            raise Failure(
                400, f"Invalid pipeline header: hop {hop!r} is not a usable URL: {exc}"
            ) from None
        try:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected http://host:port or https://host:port")
            _ = parts.port  # raises for a port that is out of range or not a number
        except ValueError as exc:
            raise Failure(
                400, f"Invalid pipeline header: hop {hop!r} is not a usable URL: {exc}"
            ) from None
        if not hop_allowed(hop, settings.hop_allow):
            raise Failure(
                403, f"Hop {hop!r} is not in AISETL_HOP_ALLOW; refusing to send the object"
            )
        self.shown = redact_url(self.url)
        self.headers = {HEADER_NODE_URL: rest} if rest else {}
        self.replayable = replayable
        self.attempts = settings.direct_put_retries + 1
        self._backoff = settings.retry_backoff
        self._logger = logger
        self._observer = observer
        self._hop = metrics.HOP_TARGET if is_target_hop(hop) else metrics.HOP_ETL
        self._deadline = deadline
        self._read_timeout = settings.hop_read_timeout

    def attempt(self, attempt: int) -> float:
        """Before attempt ``attempt`` (from 0): the seconds it may take; 504 once it is too late.

        A result is never delivered after its object's deadline: the target has given up on
        it by then.
        """
        if self._deadline is not None:
            self._deadline.check(f"delivering it by direct put to {self.shown}")
        self._observer.direct_put(self._hop, metrics.ATTEMPT)
        if self._deadline is None:
            return self._read_timeout
        return max(min(self._read_timeout, self._deadline.remaining()), 0.001)

    def failed(self) -> None:
        """The delivery failed for good (no answer, or the hop answered an error)."""
        self._observer.direct_put(self._hop, metrics.FAILURE)

    def after_transport_failure(self, attempt: int, error: str, body_started: bool) -> Retry:
        """No answer came: retry when the body can be sent again, else answer for good.

        A one-shot body none of which was read yet (the hop refused the connection) can
        still be sent, so it is retried like a replayable one.
        """
        if not self.replayable and (body_started or attempt + 1 >= self.attempts):
            self.failed()
            raise Failure(
                503,
                f"Direct put to {self.shown} failed and the request body cannot be replayed: "
                f"{error}; the target will resend the object",
                {HEADER_ETL_RETRY_REASON: RETRY_REASON_DIRECT_PUT_TRANSIENT},
            )
        if attempt + 1 >= self.attempts:
            self.failed()
            raise Failure(
                502, f"Direct put to {self.shown} failed after {self.attempts} attempt(s): {error}"
            )
        return self._retry(attempt, error)

    def after_answer(self, attempt: int, response: HopResponse) -> Retry | None:
        """A hop answered: ``Retry`` when it asks for a resend we can honour, else ``None``."""
        if (
            response.status != 503
            or response.header(HEADER_ETL_RETRY_REASON) != RETRY_REASON_DIRECT_PUT_TRANSIENT
            or not self.replayable
            or attempt + 1 >= self.attempts
        ):
            if response.status >= 400:
                self.failed()
            return None
        response.release(drain=True)
        return self._retry(attempt, "the next stage asked for a resend (503)")

    def _retry(self, attempt: int, error: str) -> Retry:
        delay = retry_delay(attempt, self._backoff)
        deadline = self._deadline
        if deadline is not None and deadline.remaining() <= delay:
            self.failed()
            raise DeadlineExceeded(
                deadline.seconds,
                f"delivering it by direct put to {self.shown} ({error}; no time left to retry)",
            )
        self._observer.direct_put(self._hop, metrics.RETRY)
        self._logger.warning(
            "Direct put to %s failed (attempt %d/%d: %s); retrying in %.1fs",
            self.shown,
            attempt + 1,
            self.attempts,
            error,
            delay,
        )
        return Retry(delay)


class _BodyFailed(Exception):
    """The result being sent failed to produce (a streaming transform raised)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Counted:
    """Counts the bytes of a streamed body; keeps a producer failure apart from I/O errors."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.started = False
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        iterator = iter(self._chunks)
        while True:
            try:
                chunk = next(iterator)
            except StopIteration:
                return
            except BaseException as exc:
                raise _BodyFailed(exc) from exc
            if chunk:
                self.sent += len(chunk)
                yield chunk


class DirectPut:
    """Sends a result to the first hop and maps the hop's answer (PROTOCOL.md §8.4-§8.8)."""

    def __init__(
        self,
        client: OutboundClient,
        settings: Settings,
        logger: logging.Logger,
        sleep: Callable[[float], None] = time.sleep,
        observer: metrics.Observer = metrics.NULL,
    ) -> None:
        self._client = client
        self._settings = settings
        self._logger = logger
        self._sleep = sleep
        self._observer = observer

    def _delivery(
        self,
        hop: str,
        rest: str,
        path: str,
        etl_args: str,
        replayable: bool,
        deadline: Deadline | None,
    ) -> Delivery:
        return Delivery(
            self._settings,
            self._logger,
            hop,
            rest,
            path,
            etl_args,
            replayable,
            self._observer,
            deadline,
        )

    def deliver(
        self,
        hop: str,
        rest: str,
        path: str,
        etl_args: str,
        make_body: Callable[[], bytes | Iterable[bytes]],
        replayable: bool,
        relay_stream: bool = False,
        deadline: Deadline | None = None,
    ) -> Reply:
        """PUT the body made by ``make_body`` to ``hop``, on this thread.

        ``make_body`` is called for each attempt that needs a fresh body (a streaming
        transform re-runs from the start); a body none of which was read is sent again as is.
        """
        plan = self._delivery(hop, rest, path, etl_args, replayable, deadline)
        body: bytes | Iterable[bytes] | None = None
        for attempt in range(plan.attempts):
            try:
                timeout = plan.attempt(attempt)
            except Failure:
                _close(body)
                raise
            if body is None:
                body = make_body()
            counted = None if isinstance(body, bytes) else _Counted(body)
            try:
                raw = self._client.put(
                    plan.url, body if counted is None else counted, plan.headers, timeout
                )
            except _BodyFailed as exc:
                _close(body)
                raise exc.error from None
            except TRANSIENT_ERRORS as exc:
                if counted is not None and isinstance(exc.__context__, _BodyFailed):
                    _close(body)
                    raise exc.__context__.error from None
                started = counted is not None and counted.started
                if started:
                    _close(body)
                try:
                    step = plan.after_transport_failure(attempt, describe_error(exc), started)
                except Failure:
                    _close(body)
                    raise
                body = None if started else body
                self._sleep(step.delay)
                continue
            except Failure:
                raise
            except Exception as exc:
                _close(body)
                plan.failed()
                raise Failure(
                    500, f"Direct put to {plan.shown} failed: {describe_error(exc)}"
                ) from exc
            response = _Pooled(raw)
            sent = len(body) if counted is None else counted.sent  # type: ignore[arg-type]
            retry = plan.after_answer(attempt, response)
            if retry is not None:
                body = None
                self._sleep(retry.delay)
                continue
            return answer_upstream(response, sent, plan.shown, relay_stream, self._logger)
        raise AssertionError("unreachable")  # pragma: no cover

    async def deliver_async(
        self,
        io: LoopIO,
        hop: str,
        rest: str,
        path: str,
        etl_args: str,
        body: bytes,
        deadline: Deadline | None = None,
    ) -> Reply:
        """:meth:`deliver` of a buffered result over the event loop's client (``io``)."""
        plan = self._delivery(hop, rest, path, etl_args, True, deadline)
        for attempt in range(plan.attempts):
            timeout = plan.attempt(attempt)
            try:
                raw = await io.request("PUT", plan.url, body, plan.headers, timeout)
            except TransportFailed as exc:
                error = redact_url(str(exc))
                if exc.after_headers:
                    plan.failed()
                    raise Failure(
                        502, f"Reading the answer of {plan.shown} failed: {error}"
                    ) from exc
                step = plan.after_transport_failure(attempt, error, body_started=False)
                await asyncio.sleep(step.delay)
                continue
            response = _Buffered(raw.status, raw.header, raw.body)
            retry = plan.after_answer(attempt, response)
            if retry is not None:
                await asyncio.sleep(retry.delay)
                continue
            return answer_upstream(response, len(body), plan.shown, False, self._logger)
        raise AssertionError("unreachable")  # pragma: no cover


def _relay(first: bytes, response: HopResponse) -> Iterator[bytes]:
    """Pass a downstream stage's content back upstream as it arrives."""
    try:
        if first:
            yield first
        while True:
            chunk = response.read(READ_CHUNK)
            if not chunk:
                return
            yield chunk
    finally:
        response.release()


def _close(body: object) -> None:
    """Close an abandoned streaming body (its generator closes the source reader)."""
    close = getattr(body, "close", None)
    if callable(close):
        close()
