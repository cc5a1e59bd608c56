"""Framework-neutral handling of one object: source, transform, destination, error mapping.

An adapter builds a :class:`~aisetl.edge.RequestHead`, asks :meth:`Flow.admit` what to do,
reads the body as told, and calls :meth:`Flow.handle` from a worker thread (or
:meth:`Flow.handle_async` on an event loop) to get the :class:`Reply` it writes back. The
steps both drivers share (where the bytes come from, where the result goes, every error text)
are methods of their own here, so the two differ only in how they wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from aisetl.aio import LoopIO, TransportFailed
from aisetl.deadline import Probe
from aisetl.direct_put import DirectPut
from aisetl.edge import Admitted, DownloadRequest, ObjectRequest, Refused, RequestHead, admit
from aisetl.hop_loop import HopLoop
from aisetl.invoke import Invoker, RunAsync
from aisetl.outbound import OutboundClient, describe_error, redact_url
from aisetl.per_process import PerProcess
from aisetl.protocol import (
    HEADER_EMPTY_RESULT,
    QPARAM_LATEST_VER,
    InvalidPipelineError,
    fqn_allowed,
    parse_pipeline,
)
from aisetl.reply import TEXT_PLAIN, Reply, failure_text
from aisetl.sources import (
    BytesSource,
    ClientGone,
    Failure,
    FileSource,
    Source,
    StreamSource,
    UpstreamSource,
    upstream_read_failed,
    upstream_refused,
    upstream_unreachable,
)
from aisetl.watch import Watch, Watcher

if TYPE_CHECKING:
    from aisetl.server import ETLServer

__all__ = ["Flow", "ObjectRequest"]

Body = bytes | BinaryIO | None


class Flow:
    """Handles objects for one server instance in one process (thread-safe)."""

    def __init__(
        self,
        server: ETLServer,
        run_async: RunAsync | None = None,
        loop_direct_puts: bool = False,
    ) -> None:
        """``loop_direct_puts``: a threaded server's buffered direct puts to plain-HTTP hops go
        out on a loop thread (:mod:`aisetl.hop_loop`) instead of the blocking client."""
        server.freeze_settings()
        self._server = server
        self._settings = server.settings
        self._logger = server.logger
        self._client = OutboundClient(server.settings)
        self.watcher = Watcher(server.settings, server.logger)
        self.observer = self.watcher.observer
        self._direct_put = DirectPut(
            self._client, server.settings, server.logger, observer=self.observer
        )
        self._content_type = server.get_mime_type()
        self.invoker = Invoker(server, run_async)
        self.streaming = server.use_streaming
        self._hop_loop = HopLoop(self._settings) if loop_direct_puts else None

    # --- the edge ----------------------------------------------------------------------------

    def admit(self, head: RequestHead) -> Admitted | Refused:
        """What a request is and how to read its body (:func:`aisetl.edge.admit`)."""
        admitted = admit(head, self._settings, self.streaming)
        if isinstance(admitted, Refused):
            self.watcher.refused(head.method, admitted.path, admitted.failure)
        return admitted

    def watch(self, request: ObjectRequest | DownloadRequest, gone: Probe | None = None) -> Watch:
        """Start watching an admitted object (``gone``: whether its client hung up)."""
        comm = "download" if isinstance(request, DownloadRequest) else _object_comm(request)
        return self.watcher.watch(comm, request.path, gone)

    def watch_now(self, request: ObjectRequest, length: int | None) -> Watch | None:
        """:meth:`watch`, with the room for a body of ``length`` bytes reserved; ``None`` when
        that needs a wait (then :meth:`watch` and :meth:`Watch.reserve_async` as usual)."""
        return self.watcher.watch_reserved(_object_comm(request), request.path, length)

    def watch_ws(self, request: ObjectRequest | None) -> Watch:
        """Start watching a ws task (its failures are logged by the ws task rules)."""
        path = request.path if request is not None else "(unknown)"
        return self.watcher.watch("ws", path, logs_failures=False)

    def refusal(self, refused: Refused) -> Reply:
        """The reply to a refused request."""
        return self.failure_reply(refused.path, refused.failure)

    def client_gone(self, exc: ClientGone | OSError) -> None:
        """The target hung up before the answer: nothing to send (its watch logs it)."""
        self._logger.debug("client went away: %s", exc)

    def wants_body_stream(self, request: ObjectRequest) -> bool:
        """Whether the body should come as a reader (not as bytes)."""
        return self.streaming and not request.fqn

    def failure_reply(self, path: str, failure: Failure) -> Reply:
        """The one error format of every server and transport: message, then the object.

        It is logged once, when its object ends (:mod:`aisetl.watch`).
        """
        message = failure_text(failure.message, path)
        headers = {"Content-Type": TEXT_PLAIN, **failure.headers}
        return Reply(failure.status, headers, message.encode("utf-8", "replace"), failure=failure)

    # --- the blocking driver -----------------------------------------------------------------

    def handle(
        self,
        request: ObjectRequest | DownloadRequest,
        body: Body = None,
        watch: Watch | None = None,
    ) -> Reply:
        """Transform one object and decide the answer; never raises for a bad request."""
        w = watch or self.watcher.detached(request.path)
        try:
            if isinstance(request, DownloadRequest):
                return self._handle_download(request, w)
            hop, rest = self._hop(request)
            source = self._source(request, body)
            if self.streaming:
                return self._handle_stream(request, source, hop, rest, w)
            if isinstance(source, FileSource) and not self._settings.direct_fqn:
                w.reserve_file(source.path)  # waits, unread, while memory is short
            data = self._load(source)
            w.check("reading the object")
            result = w.transform(self.invoker, data, request)
            w.holds(len(data) + len(result))
            if not hop:
                return self._content(result)
            w.check("about to deliver it by direct put")
            if self._hop_loop is not None and LoopIO.reaches(hop):
                deadline = w.deadline
                return self._hop_loop.run(
                    lambda io: self._direct_put.deliver_async(
                        io, hop, rest, request.path, request.etl_args, result, deadline=deadline
                    )
                )
            return self._direct_put.deliver(
                hop,
                rest,
                request.path,
                request.etl_args,
                lambda: result,
                replayable=True,
                deadline=w.deadline,
            )
        except Failure as failure:
            return self.failure_reply(request.path, failure)
        finally:
            if watch is None:
                w.finish()

    # --- the event-loop driver ---------------------------------------------------------------

    def can_run_inline(self, request: ObjectRequest, body: Body) -> bool:
        """Whether :meth:`handle_inline` may handle this object on the caller's event loop.

        Only a quick synchronous buffered transform of bytes already in memory, with no
        network I/O: no hop to deliver to and no bytes to fetch from the target.
        """
        return (
            not self.streaming
            and not request.pipeline
            and not request.from_target
            and not request.fqn
            and (body is None or isinstance(body, bytes))
            and self.invoker.may_inline(len(body or b""), self._settings.inline_max_bytes)
        )

    def handle_inline(
        self, request: ObjectRequest, body: Body, watch: Watch | None = None
    ) -> Reply | None:
        """:meth:`handle` on an event loop thread (after :meth:`can_run_inline` said yes).

        ``None`` when the transform cannot run there: the caller then runs :meth:`handle` on
        its thread pool, as it would have without inline execution.
        """
        data: bytes = body or b""  # type: ignore[assignment]
        try:
            if watch is None:
                result = self.invoker.transform_inline(data, request)
            else:
                result = watch.inline(self.invoker.transform_inline, data, request)
        except Failure as failure:
            return self.failure_reply(request.path, failure)
        return None if result is None else self._content(result)

    async def handle_async(
        self,
        request: ObjectRequest | DownloadRequest,
        body: Body,
        io: LoopIO,
        watch: Watch | None = None,
    ) -> Reply | None:
        """:meth:`handle` on an event loop: network I/O on the loop, blocking work on ``io``'s pool.

        Covers buffered transforms (synchronous, ``async`` and batched) whose peers are plain
        HTTP. ``None`` when the object needs the blocking driver (streaming transforms, TLS
        peers, a download): run :meth:`handle` on the pool then.
        """
        if (
            isinstance(request, DownloadRequest)
            or self.streaming
            or not (body is None or isinstance(body, bytes))
        ):
            return None
        w = watch or self.watcher.detached(request.path)
        try:
            hop, rest = self._hop(request)
            if hop and not io.reaches(hop):
                return None
            source = self._source(request, body)
            data: bytes | str
            if isinstance(source, UpstreamSource):
                if not io.reaches(source.target_url):
                    return None
                data = await self._fetch(io, source)
            elif isinstance(source, FileSource):
                if not self._settings.direct_fqn:
                    await w.reserve_file_async(source.path)
                small = source.is_small()
                data = self._load(source) if small else await io.run(self._load, source)
            else:
                data = source.load()
            w.check("reading the object")
            result = await self._transform_on_loop(io, data, request, w)
            w.holds(len(data) + len(result))
            if not hop:
                return self._content(result)
            w.check("about to deliver it by direct put")
            return await self._direct_put.deliver_async(
                io, hop, rest, request.path, request.etl_args, result, deadline=w.deadline
            )
        except Failure as failure:
            return self.failure_reply(request.path, failure)
        finally:
            if watch is None:
                w.finish()

    async def _fetch(self, io: LoopIO, source: UpstreamSource) -> bytes:
        url = source.url()
        try:
            response = await io.request("GET", url)
        except TransportFailed as exc:
            if exc.after_headers:
                raise upstream_read_failed(str(exc)) from exc
            raise upstream_unreachable(url, str(exc)) from exc
        if response.status >= 400:
            raise upstream_refused(response.status, response.body)
        return response.body

    async def _transform_on_loop(
        self, io: LoopIO, data: bytes | str, request: ObjectRequest, watch: Watch
    ) -> bytes:
        if self.invoker.is_async or self.invoker.batcher is not None:
            return await watch.awaited(self.invoker, data, request)  # awaited, no thread held
        if isinstance(data, bytes) and self.invoker.may_inline(
            len(data), self._settings.inline_max_bytes
        ):
            result = watch.inline(self.invoker.transform_inline, data, request)
            if result is not None:
                return result
        return await watch.transform_on(io.run, self.invoker, data, request)

    # --- the shared steps --------------------------------------------------------------------

    @staticmethod
    def _hop(request: ObjectRequest) -> tuple[str, str]:
        try:
            return parse_pipeline(request.pipeline)
        except InvalidPipelineError as exc:
            raise Failure(400, f"Invalid pipeline header: {exc}") from None

    def _source(self, request: ObjectRequest, body: Body) -> Source:
        if request.fqn:
            path = self._server.sanitize_fqn(request.fqn)
            if "\x00" in path:
                raise Failure(400, f"etl_fqn {path!r} holds a NUL byte: it cannot name a file")
            if not fqn_allowed(path, self._settings.fqn_allow):
                raise Failure(
                    400, f"etl_fqn {path!r} is outside the folders allowed by AISETL_FQN_ALLOW"
                )
            # With latest-ver the target still passes the FQN (PROTOCOL.md D22); the file is
            # what the target itself would serve, so it is read rather than fetched.
            return FileSource(path)
        if request.from_target:
            query = f"{QPARAM_LATEST_VER}=true" if request.latest_ver else ""
            return UpstreamSource(self._client, self._settings.target_url, request.path, query)
        if body is None:
            return BytesSource(b"")
        if isinstance(body, bytes):
            return BytesSource(body)
        return StreamSource(body)

    def _load(self, source: Source) -> bytes | str:
        """The input of a buffered transform: the bytes, or (``ETL_DIRECT_FQN``) a file's path."""
        if self._settings.direct_fqn and isinstance(source, FileSource):
            return source.check()
        return source.load()

    def _download(self, request: DownloadRequest) -> bytes:
        """Fetch ``original_url`` for ``POST /download`` (PROTOCOL.md §13)."""
        shown = redact_url(request.url)
        try:
            response = self._client.get(request.url)
        except Exception as exc:
            raise Failure(
                502, f"Fetching original_url {shown} failed: {describe_error(exc)}"
            ) from exc
        try:
            if response.status >= 400:
                detail = response.read(4096).decode("utf-8", "replace").strip()
                raise Failure(
                    response.status,
                    f"original_url {shown} answered {response.status}"
                    + (f": {detail}" if detail else ""),
                )
            try:
                return response.read()
            except Exception as exc:
                raise Failure(
                    502, f"Reading original_url {shown} failed: {describe_error(exc)}"
                ) from exc
        finally:
            response.release_conn()

    def _handle_download(self, request: DownloadRequest, watch: Watch) -> Reply:
        data = self._download(request)
        watch.check("downloading the object")
        target = ObjectRequest(path=request.path, etl_args=request.etl_args)
        if self.streaming:
            return self._handle_stream(target, BytesSource(data), "", "", watch)
        return self._content(watch.transform(self.invoker, data, target))

    def _handle_stream(
        self, request: ObjectRequest, source: Source, hop: str, rest: str, watch: Watch
    ) -> Reply:
        bound = watch.bounds.bound if watch.bounds.active else None
        steps = not self._server.stream_is_async  # an async one is bounded on its loop

        def chunks() -> Iterator[bytes]:
            # Open the source now (so a missing file is a 404), then stream the transform.
            reader = watch.reading(source.open())
            return watch.stream(self.invoker.stream(reader, request, bound), steps)

        if hop:
            return self._direct_put.deliver(
                hop,
                rest,
                request.path,
                request.etl_args,
                chunks,
                replayable=source.replayable,
                relay_stream=True,
                deadline=watch.deadline,
            )
        output = watch.stream(
            self.invoker.stream(watch.reading(source.open()), request, bound), steps
        )
        first = next(output, b"")
        if not first:
            return self._content(b"")
        return Reply(200, {"Content-Type": self._content_type}, stream=_prepend(first, output))

    def _content(self, data: bytes) -> Reply:
        headers = {"Content-Type": self._content_type}
        if not data:
            headers[HEADER_EMPTY_RESULT] = "true"
        return Reply(200, headers, data)


def _object_comm(request: ObjectRequest) -> str:
    """The comm type an HTTP object request is counted under."""
    return "hpull" if request.from_target else "hpush"


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield first
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


class FlowPerProcess(PerProcess[Flow]):
    """This process's :class:`Flow`, built once after any fork, even when threads ask at once.

    (Two flows in one process would split its batches and its memory bound in two.)
    """
