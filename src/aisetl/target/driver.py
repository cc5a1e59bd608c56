"""Send one object to an ETL server the way a Go target does, and read the answer as it does.

Covers hpush (PUT, §5), offline hpull (GET, §6.2) and ws tasks (§7), the retry policy of
§5.4 with a scalable clock, and the response interpretation of §5.3 / TV-14.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aisetl.http_client import TIMEOUT, HTTPClient, Response, TransportError
from aisetl.protocol import (
    HEADER_ETL_RETRY_REASON,
    HEADER_NODE_URL,
    RETRY_REASON_DIRECT_PUT_TRANSIENT,
)
from aisetl.target.record import DRIVER, Record, Recorder
from aisetl.target.store import Bucket
from aisetl.target.wire import (
    MSG_NOT_FOUND,
    MSG_SKIP,
    GoURLError,
    ObjError,
    etl_error_message,
    go_client_error,
    hpull_request_uri,
    hpush_request_uri,
    pack_pipeline,
    request_head,
    retriable_status_message,
    retry_sleeps,
    ws_control_message,
)
from aisetl.target.ws import WSError, WSPool
from aisetl.ws_protocol import LOST_IN_CLUSTER


@dataclass(frozen=True)
class RetryPolicy:
    """A target's retry and timeout settings (§5.4, §10.3).

    ``time_scale`` multiplies every retry sleep (0.001 runs the real schedule in
    milliseconds); ``obj_timeout`` bounds each attempt and is not scaled.
    """

    retries: int = 10
    sleep: float = 1.0
    max_sleep: float = 5.0
    time_scale: float = 1.0
    obj_timeout: float = 10.0

    def sleeps(self) -> list[float]:
        """Seconds slept before each retry."""
        return retry_sleeps(self.retries, self.sleep, self.max_sleep, self.time_scale)


@dataclass
class TransformResult:
    """What a target concluded about one object sent to an ETL server."""

    obj_name: str  # the source object, e.g. "ais://src/a.txt"
    status: int = 0  # the server's last HTTP status (0: none)
    content: bytes | None = None  # transformed bytes returned to the target
    delivered: bool = False  # answered 204 / ws text: delivered by direct put
    text: str | None = None  # a ws text reply (a target ignores what it says)
    error: ObjError | None = None
    #: A failure the target took for success (a ws text reply to a task whose result should
    #: come back): why the object is lost in a cluster, with the server's text. No error is
    #: recorded, as a target records none; everything built on the emulator reports it.
    lost: str | None = None
    attempts: int = 0  # HTTP attempts (ws: 1)
    elapsed: float = 0.0
    framing: str = ""  # how the body was framed: "length", "chunked", "close"
    sleeps: list[float] = field(default_factory=list)  # retry sleeps that happened

    @property
    def ok(self) -> bool:
        """No error was recorded."""
        return self.error is None

    @property
    def failed(self) -> bool:
        """The object did not come through: an error, or a failure the target could not see."""
        return self.error is not None or self.lost is not None

    @property
    def problem(self) -> str | None:
        """What went wrong, as one line (``None`` when nothing did)."""
        return self.error.msg if self.error is not None else self.lost

    def fail(self, msg: str, ecode: int = 0) -> TransformResult:
        """Record an error and return self."""
        self.error = ObjError(self.obj_name, msg, ecode)
        return self


@dataclass(frozen=True)
class Task:
    """One object to transform, with everything a target decides for it."""

    bucket: Bucket
    name: str
    fqn: bool = True  # pass the FQN (otherwise send the bytes)
    etl_args: str = ""
    hops: tuple[str, ...] = ()  # pipeline stages and/or the destination hop
    sink: bool = True  # the target keeps the result itself (no destination hop)
    inline: bool = False  # a client GET: a 204 answer is an error
    latest_ver: bool = False  # hpull: add latest-ver=true; hpush/ws: body mode


class Driver:
    """Sends tasks to ETL servers through one HTTP client, recording every attempt."""

    def __init__(
        self,
        client: HTTPClient,
        *,
        node: str = "t0",
        policy: RetryPolicy | None = None,
        faithful: bool = True,
        recorder: Recorder | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.node = node
        self.policy = policy or RetryPolicy()
        self.faithful = faithful
        self.recorder = recorder
        self._sleep = sleep

    # --- hpush / hpull --------------------------------------------------------------------

    async def hpush(
        self, host: str, port: int, task: Task, obj_timeout: float | None = None
    ) -> TransformResult:
        """PUT the object to the server (§5.1) and interpret the answer (§5.3)."""
        result = self._start(task)
        if result.error is not None:
            return result
        body_mode = not task.fqn or task.latest_ver
        fqn = "" if body_mode else task.bucket.fqn(task.name)
        base = f"http://{host}:{port}"
        try:
            uri = hpush_request_uri(
                base, task.bucket.name, task.name, task.etl_args, fqn, faithful=self.faithful
            )
        except GoURLError as exc:
            self._record_error("PUT", uri="", error=str(exc))
            return self._finish(result.fail(str(exc)))
        headers = self._hop_headers(task)

        def body() -> bytes:
            return task.bucket.get(task.name) if body_mode else b""

        return await self._run(
            result, task, "PUT", host, port, uri, headers, body, obj_timeout, body_mode
        )

    async def hpull(
        self, host: str, port: int, task: Task, obj_timeout: float | None = None
    ) -> TransformResult:
        """GET ``/<escaped uname>`` from the server (§6.2) and interpret the answer."""
        result = self._start(task)
        if result.error is not None:
            return result
        obj = task.bucket.object_name(task.name)
        fqn = "" if not task.fqn else task.bucket.fqn(task.name)
        uri = hpull_request_uri(obj.uname, task.etl_args, fqn, task.latest_ver)
        headers = self._hop_headers(task)
        return await self._run(result, task, "GET", host, port, uri, headers, None, obj_timeout)

    def _start(self, task: Task) -> TransformResult:
        result = TransformResult(task.bucket.object_name(task.name).cname)
        result.elapsed = time.monotonic()
        if not task.bucket.exists(task.name):
            return self._finish(result.fail(MSG_NOT_FOUND, 404))
        return result

    @staticmethod
    def _finish(result: TransformResult) -> TransformResult:
        result.elapsed = time.monotonic() - result.elapsed
        return result

    @staticmethod
    def _hop_headers(task: Task) -> list[tuple[str, str]]:
        return [(HEADER_NODE_URL, pack_pipeline(task.hops))] if task.hops else []

    async def _run(
        self,
        result: TransformResult,
        task: Task,
        method: str,
        host: str,
        port: int,
        uri: str,
        headers: list[tuple[str, str]],
        body: Callable[[], bytes] | None,
        obj_timeout: float | None,
        replay_503: bool = False,
    ) -> TransformResult:
        """Attempt the request until it succeeds, fails for good, or retries run out."""
        policy = self.policy
        timeout = policy.obj_timeout if obj_timeout is None else obj_timeout
        sleeps = policy.sleeps()
        url = f"http://{host}:{port}{uri}"
        soft = 0
        while True:  # bounded: a hard error ends it, soft errors at most policy.retries times
            result.attempts += 1
            try:
                data = body() if body is not None else None
            except OSError as exc:  # the object vanished or cannot be read
                return self._finish(result.fail(_read_error(exc), _read_status(exc)))
            head = request_head(
                method, uri, f"{host}:{port}", headers, None if data is None else len(data)
            )
            started = time.monotonic()
            try:
                response = await self.client.send(
                    host, port, head, data, method=method, timeout=timeout
                )
            except TransportError as exc:
                self._record(method, uri, headers, head, data, None, str(exc), started, result)
                if exc.after_headers:
                    # The status line arrived; reading the body failed (never retried).
                    result.status = exc.status
                    if exc.status >= 400:
                        msg = f"failed to read error message from ETL response: {exc}"
                        return self._finish(result.fail(msg, exc.status))
                    return self._finish(result.fail(str(exc)))
                message = go_client_error(method, url, str(exc))
                if exc.kind == TIMEOUT or not exc.retriable:
                    return self._finish(result.fail(message))
                soft += 1
                if soft > policy.retries:
                    return self._finish(result.fail(message))
                await self._pause(result, sleeps[soft - 1])
                continue
            self._record(method, uri, headers, head, data, response, "", started, result)
            if (
                replay_503
                and response.status == 503
                and response.header(HEADER_ETL_RETRY_REASON) == RETRY_REASON_DIRECT_PUT_TRANSIENT
            ):
                soft += 1
                if soft > policy.retries:
                    result.status = 503
                    return self._finish(result.fail(retriable_status_message(503), 503))
                await self._pause(result, sleeps[soft - 1])
                continue
            return self._finish(self._interpret(result, response, task.inline))

    async def _pause(self, result: TransformResult, seconds: float) -> None:
        result.sleeps.append(seconds)
        await self._sleep(seconds)

    @staticmethod
    def _interpret(result: TransformResult, response: Response, inline: bool) -> TransformResult:
        status = response.status
        result.status = status
        result.framing = response.framing
        if status == 204:
            if inline:
                return result.fail(MSG_SKIP, 204)
            result.delivered = True
            return result
        if status >= 400:
            return result.fail(etl_error_message(status, response.body), status)
        result.content = response.body
        return result

    def _record(
        self,
        method: str,
        uri: str,
        headers: Sequence[tuple[str, str]],
        head: bytes,
        data: bytes | None,
        response: Response | None,
        error: str,
        started: float,
        result: TransformResult,
    ) -> None:
        recorder = self.recorder
        if recorder is None or not recorder.enabled:
            return
        recorder.add(
            Record(
                side=DRIVER,
                target=self.node,
                method=method,
                uri=uri,
                headers=tuple(headers),
                body_len=len(data) if data else 0,
                status=response.status if response else 0,
                response_headers=tuple(response.headers) if response else (),
                response_len=len(response.body) if response else 0,
                error=error,
                started=started,
                elapsed=time.monotonic() - started,
                head=head,
                attempt=result.attempts,
            )
        )

    def _record_error(self, method: str, uri: str, error: str) -> None:
        if self.recorder is not None and self.recorder.enabled:
            self.recorder.add(
                Record(side=DRIVER, target=self.node, method=method, uri=uri, error=error)
            )

    # --- ws ---------------------------------------------------------------------------------

    async def ws(self, pool: WSPool, task: Task, deadline: float | None = None) -> TransformResult:
        """Send one ws task (control message, then the bytes unless FQN) and await its reply.

        ``deadline``: when the job would be aborted (a target has no per-object ws timeout).
        """
        result = self._start(task)
        if result.error is not None:
            return result
        body_mode = not task.fqn or task.latest_ver
        pipeline = pack_pipeline(task.hops)
        control = ws_control_message(
            path=task.name,
            fqn="" if body_mode else task.bucket.fqn(task.name),
            etl_args=task.etl_args,
            pipeline=pipeline,
        )
        try:
            payload = task.bucket.get(task.name) if body_mode else None
        except OSError as exc:
            return self._finish(result.fail(_read_error(exc), _read_status(exc)))
        result.attempts = 1
        try:
            reply = await pool.submit(control, payload, deadline)
        except WSError as exc:
            return self._finish(result.fail(str(exc)))
        if isinstance(reply, str):
            result.text = reply
            if task.hops:  # delivered by direct put, as far as a target can tell
                result.delivered = True
            else:  # skipped or stored empty, by timing (§7.4, D27); the emulator skips it
                result.lost = f"{LOST_IN_CLUSTER}; the server answered: {reply}"
        elif not task.sink:
            result.fail(
                "task.w is nil, expected direct put but got result from pipeline: " + pipeline
            )
        else:
            result.content = reply
        return self._finish(result)


def _read_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return MSG_NOT_FOUND
    return f"failed to read the object: {exc.strerror or exc}"


def _read_status(exc: OSError) -> int:
    return 404 if isinstance(exc, FileNotFoundError) else 0
