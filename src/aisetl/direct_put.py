"""Delivery of a result to the next hop (direct put / pipeline), with the retry policy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urlsplit

import urllib3

from aisetl.aio import LoopIO, TransportFailed
from aisetl.config import Settings
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
    parse_bool,
    retry_delay,
)
from aisetl.reply import Reply
from aisetl.sources import READ_CHUNK, Failure

#: How much of a hop's error body is passed back upstream.
_ERROR_BODY_LIMIT = 64 * 1024


class _BodyFailed(Exception):
    """The result being sent failed to produce (a streaming transform raised)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Counted:
    """Counts the bytes of a streamed body; keeps a producer failure apart from I/O errors."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
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


def hop_allowed(hop: str, allow: tuple[str, ...]) -> bool:
    """Whether the opt-in hop allow-list (``AISETL_HOP_ALLOW``) admits this hop."""
    if not allow:
        return True
    parts = urlsplit(hop)
    host = parts.hostname or ""
    candidates = {host, parts.netloc}
    return any(entry in candidates for entry in allow)


class DirectPut:
    """Sends a result to the first hop and maps the hop's answer (PROTOCOL.md §8.4-§8.8)."""

    def __init__(
        self,
        client: OutboundClient,
        settings: Settings,
        logger: logging.Logger,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._settings = settings
        self._logger = logger
        self._sleep = sleep

    def _address(
        self, hop: str, rest: str, path: str, etl_args: str
    ) -> tuple[str, str, dict[str, str]]:
        """The PUT's URL, the URL as logs show it (secret redacted), and its headers."""
        if not hop_allowed(hop, self._settings.hop_allow):
            raise Failure(
                403, f"Hop {hop!r} is not in AISETL_HOP_ALLOW; refusing to send the object"
            )
        url = compose_direct_put_url(hop, self._settings.target_url, path, etl_args)
        return url, redact_url(url), {HEADER_NODE_URL: rest} if rest else {}

    def _delay_or_fail(self, shown: str, attempt: int, attempts: int, error: str) -> float:
        """After a transient failure: 502 when no attempt is left, else the delay to wait."""
        if attempt + 1 >= attempts:
            raise Failure(502, f"Direct put to {shown} failed after {attempts} attempt(s): {error}")
        delay = retry_delay(attempt, self._settings.retry_backoff)
        self._logger.warning(
            "Direct put to %s failed (attempt %d/%d: %s); retrying in %.1fs",
            shown,
            attempt + 1,
            attempts,
            error,
            delay,
        )
        return delay

    def deliver(
        self,
        hop: str,
        rest: str,
        path: str,
        etl_args: str,
        make_body: Callable[[], bytes | Iterable[bytes]],
        replayable: bool,
        relay_stream: bool = False,
    ) -> Reply:
        """PUT the body made by ``make_body`` to ``hop``; retry transient failures if replayable.

        ``make_body`` is called once per attempt (a streaming transform re-runs from the
        start). A one-shot body is never retried locally: a transient failure answers 503 with
        the retry reason, and the target replays the whole request.
        """
        url, shown, headers = self._address(hop, rest, path, etl_args)
        attempts = self._settings.direct_put_retries + 1 if replayable else 1
        for attempt in range(attempts):
            body = make_body()
            counted = None if isinstance(body, bytes) else _Counted(body)
            try:
                response = self._client.put(url, body if counted is None else counted, headers)
            except _BodyFailed as exc:
                _close(body)
                raise exc.error from None
            except TRANSIENT_ERRORS as exc:
                _close(body)
                if counted is not None and isinstance(exc.__context__, _BodyFailed):
                    raise exc.__context__.error from None
                if not replayable:
                    self._logger.warning(
                        "Direct put to %s failed (%s); asking the target to resend",
                        shown,
                        describe_error(exc),
                    )
                    raise Failure(
                        503,
                        f"Direct put to {shown} failed and the request body cannot be replayed: "
                        f"{describe_error(exc)}; the target will resend the object",
                        {HEADER_ETL_RETRY_REASON: RETRY_REASON_DIRECT_PUT_TRANSIENT},
                    ) from exc
                self._sleep(self._delay_or_fail(shown, attempt, attempts, describe_error(exc)))
                continue
            except Failure:
                raise
            except Exception as exc:
                _close(body)
                raise Failure(500, f"Direct put to {shown} failed: {describe_error(exc)}") from exc
            sent = len(body) if counted is None else counted.sent  # type: ignore[arg-type]
            return self._answer(response, sent, shown, relay_stream)
        raise AssertionError("unreachable")  # pragma: no cover

    async def deliver_async(
        self, io: LoopIO, hop: str, rest: str, path: str, etl_args: str, body: bytes
    ) -> Reply:
        """:meth:`deliver` of a buffered result over the event loop's client (``io``).

        The same URL, headers, retries and answer mapping; the hop must be plain HTTP
        (see :meth:`LoopIO.reaches`).
        """
        url, shown, headers = self._address(hop, rest, path, etl_args)
        attempts = self._settings.direct_put_retries + 1
        for attempt in range(attempts):
            try:
                response = await io.request("PUT", url, body, headers)
            except TransportFailed as exc:
                error = redact_url(str(exc))
                if exc.after_headers:
                    raise Failure(502, f"Reading the answer of {shown} failed: {error}") from exc
                await asyncio.sleep(self._delay_or_fail(shown, attempt, attempts, error))
                continue
            return self._answer_bytes(
                response.status, response.header, response.body, len(body), shown
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer_bytes(
        self,
        status: int,
        header: Callable[[str], str | None],
        body: bytes,
        sent: int,
        shown: str,
    ) -> Reply:
        """The answer upstream for a hop's complete response (as :meth:`_answer` maps it)."""
        outcome = interpret_hop_response(
            status,
            body_empty=not body,
            hop_length=header(HEADER_DIRECT_PUT_LENGTH),
            bytes_sent=sent,
            empty_result=parse_bool(header(HEADER_EMPTY_RESULT)),
        )
        if not outcome.relay_body:
            return Reply(204, direct_put_headers(outcome.direct_put_length))
        headers = {HEADER_EMPTY_RESULT: "true"} if not body and outcome.status == 200 else {}
        if outcome.status >= 300:
            body = body[: READ_CHUNK + _ERROR_BODY_LIMIT]
            self._logger.error("Hop %s answered %d: %r", shown, outcome.status, body[:200])
        return Reply(outcome.status, headers, body)

    def _answer(
        self, response: urllib3.BaseHTTPResponse, sent: int, shown: str, relay_stream: bool
    ) -> Reply:
        try:
            first = response.read(READ_CHUNK)
        except Exception as exc:
            response.release_conn()
            raise Failure(
                502, f"Reading the answer of {shown} failed: {describe_error(exc)}"
            ) from exc
        outcome = interpret_hop_response(
            response.status,
            body_empty=not first,
            hop_length=response.headers.get(HEADER_DIRECT_PUT_LENGTH),
            bytes_sent=sent,
            empty_result=parse_bool(response.headers.get(HEADER_EMPTY_RESULT)),
        )
        if not outcome.relay_body:
            response.drain_conn()
            response.release_conn()
            return Reply(204, direct_put_headers(outcome.direct_put_length))
        headers = {HEADER_EMPTY_RESULT: "true"} if not first and outcome.status == 200 else {}
        if outcome.status >= 300:
            rest = response.read(_ERROR_BODY_LIMIT) if first else b""
            response.drain_conn()
            response.release_conn()
            self._logger.error(
                "Hop %s answered %d: %r", shown, outcome.status, (first + rest)[:200]
            )
            return Reply(outcome.status, headers, first + rest)
        if not relay_stream:
            try:
                data = first + response.read()
            except Exception as exc:
                raise Failure(
                    502, f"Reading the answer of {shown} failed: {describe_error(exc)}"
                ) from exc
            finally:
                response.release_conn()
            return Reply(outcome.status, headers, data)
        return Reply(outcome.status, headers, stream=_relay(first, response))


def _relay(first: bytes, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
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
        response.release_conn()


def _close(body: object) -> None:
    """Close an abandoned streaming body (its generator closes the source reader)."""
    close = getattr(body, "close", None)
    if callable(close):
        close()
