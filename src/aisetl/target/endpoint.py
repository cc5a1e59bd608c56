"""The HTTP endpoint of an emulated target.

Serves what ETL servers call through ``AIS_TARGET_URL`` (§6.4: GET/HEAD/PUT on
``/v1/etl/_object/<etl>/<secret>/<uname>``) and what a client calls on a target: plain object
GET/PUT on ``/v1/objects/<bucket>/<object>`` and the inline transform
``GET /v1/objects/<bucket>/<object>?etl_name=...`` (307 redirect for hpull, §6.1).
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from aisetl.protocol import ETL_OBJECT_PATH, QPARAM_ETL_ARGS, QPARAM_LATEST_VER, parse_query
from aisetl.target.http import Reply, Request
from aisetl.target.store import Bucket
from aisetl.target.wire import (
    MSG_SKIP,
    OBJECTS_PATH,
    QPARAM_ETL_NAME,
    QPARAM_ETL_PIPELINE,
    QPARAM_NAMESPACE,
    QPARAM_OWT,
    QPARAM_PROVIDER,
    QPARAM_UUID,
    ObjectName,
    UnameError,
    ais_error_body,
    bucket_cname,
    hpull_location,
    parse_etl_object_path,
)

if TYPE_CHECKING:
    from aisetl.target.cluster import AsyncTarget

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)$")
_OBJECT_PREFIX = ETL_OBJECT_PATH + "/"
_OBJECTS_PREFIX = OBJECTS_PATH + "/"


@dataclass(frozen=True)
class PutRecord:
    """One object stored through the ETL object endpoint (a direct put)."""

    etl_name: str
    object: ObjectName
    size: int
    uuid: str
    owt: str


class Endpoint:
    """Request handler of one target's HTTP endpoint (see the module docstring)."""

    def __init__(self, target: AsyncTarget, max_puts: int = 10_000) -> None:
        self.target = target
        self.puts: deque[PutRecord] = deque(maxlen=max_puts)
        #: job ID (``uuid``) -> [objects, bytes] received by direct put
        self.received: dict[str, list[int]] = {}

    async def __call__(self, request: Request) -> Reply:
        path = request.path
        if path.startswith(_OBJECT_PREFIX):
            return self._etl_object(request)
        if path.startswith(_OBJECTS_PREFIX):
            return await self._objects(request)
        if path in ("/v1/health", "/health"):
            return Reply(200)
        return self._error(request, 400, f"invalid URL path {path!r}")

    def _error(self, request: Request, status: int, message: str) -> Reply:
        body = ais_error_body(
            message, status, request.method, request.path, request.peer, f"t[{self.target.id}]"
        )
        return Reply(status, body, [("Content-Type", "application/json")])

    # --- /v1/etl/_object ----------------------------------------------------------------

    def _etl_object(self, request: Request) -> Reply:
        try:
            parsed = parse_etl_object_path(request.path)
        except UnameError as exc:
            return self._error(request, exc.status, str(exc))
        etl = self.target.cluster.etls.get(parsed.etl_name)
        if etl is None:
            return self._error(request, 404, f"t[{self.target.id}]: etl not found{parsed.etl_name}")
        if etl.secret != parsed.secret:
            return self._error(request, 400, "unrecognized request source")
        obj = parsed.object
        if request.method == "PUT":
            bucket = self._bucket(obj)
            if bucket is None:
                return self._no_bucket(request, obj)
            try:
                size = bucket.put(obj.name, request.body)
            except ValueError as exc:
                return self._error(request, 400, str(exc))
            query = parse_query(request.query)
            uuid = query.get(QPARAM_UUID, "")
            self.puts.append(PutRecord(etl.name, obj, size, uuid, query.get(QPARAM_OWT, "")))
            if uuid:
                counts = self.received.setdefault(uuid, [0, 0])
                counts[0] += 1
                counts[1] += size
            return Reply(200)
        if request.method in ("GET", "HEAD"):
            return self._read(request, obj)
        reply = self._error(request, 405, f"{request.method} is not allowed")
        reply.headers.append(("Allow", "GET, HEAD, PUT"))
        return reply

    def _bucket(self, obj: ObjectName) -> Bucket | None:
        return self.target.mountpath.lookup(obj.bucket, obj.provider, obj.namespace)

    def _no_bucket(self, request: Request, obj: ObjectName) -> Reply:
        cname = bucket_cname(obj.provider, obj.namespace, obj.bucket)
        return self._error(request, 404, f'bucket "{cname}" does not exist')

    def _read(self, request: Request, obj: ObjectName) -> Reply:
        bucket = self._bucket(obj)
        if bucket is None:
            return self._no_bucket(request, obj)
        try:
            path = bucket.fqn(obj.name)
            size = os.stat(path).st_size
        except (ValueError, OSError):
            return self._error(request, 404, f"t[{self.target.id}]: {obj.cname} does not exist")
        headers = [("Ais-Name", obj.name), ("Ais-Size", str(size))]
        if request.method == "HEAD":
            headers.append(("Content-Length", str(size)))
            return Reply(200, b"", headers)
        with open(path, "rb") as file:
            span = _parse_range(request.header("range"), size)
            if span is None:
                return Reply(200, file.read(), headers)
            start, end = span
            if start >= size or start > end:
                headers.append(("Content-Range", f"bytes */{size}"))
                return Reply(416, b"", headers)
            file.seek(start)
            data = file.read(end - start + 1)
        headers.append(("Content-Range", f"bytes {start}-{start + len(data) - 1}/{size}"))
        return Reply(206, data, headers)

    # --- /v1/objects --------------------------------------------------------------------

    async def _objects(self, request: Request) -> Reply:
        rest = unquote(request.path[len(_OBJECTS_PREFIX) :], errors="surrogateescape")
        bucket_name, _, name = rest.partition("/")
        query = parse_query(request.query)
        obj = ObjectName(
            query.get(QPARAM_PROVIDER, "ais"), query.get(QPARAM_NAMESPACE, ""), bucket_name, name
        )
        if not name:
            return self._error(request, 400, "missing object name")
        etl_name = query.get(QPARAM_ETL_NAME, "")
        if request.method == "PUT" and not etl_name:
            bucket = self._bucket(obj)
            if bucket is None:
                return self._no_bucket(request, obj)
            bucket.put(obj.name, request.body)
            return Reply(200)
        if request.method not in ("GET", "HEAD"):
            return self._error(request, 405, f"{request.method} is not allowed")
        if not etl_name:
            return self._read(request, obj)
        return await self._inline(request, obj, etl_name, query)

    async def _inline(
        self, request: Request, obj: ObjectName, etl_name: str, query: dict[str, str]
    ) -> Reply:
        cluster = self.target.cluster
        etl = cluster.etls.get(etl_name)
        if etl is None:
            return self._error(request, 404, f"etl {etl_name!r} not found")
        stages = []
        for stage_name in filter(None, query.get(QPARAM_ETL_PIPELINE, "").split(",")):
            stage = cluster.etls.get(stage_name)
            if stage is None:
                return self._error(request, 404, f"etl {stage_name!r} not found")
            stages.append(stage)
        bucket = self._bucket(obj)
        if bucket is None:
            return self._no_bucket(request, obj)
        if not bucket.exists(obj.name):
            return self._error(request, 404, f"t[{self.target.id}]: {obj.cname} does not exist")
        etl_args = query.get(QPARAM_ETL_ARGS, "")
        latest = query.get(QPARAM_LATEST_VER, "") == "true"
        if etl.comm == "hpull":
            if stages:
                return self._error(
                    request, 400, "inline transform pipeline not supported for hpull://"
                )
            fqn = bucket.fqn(obj.name) if cluster.pass_fqn else ""
            location = hpull_location(etl.url(self.target.index), obj.uname, etl_args, fqn, latest)
            body = f'<a href="{_html_escape(location)}">Temporary Redirect</a>.\n\n'.encode()
            return Reply(
                307,
                body,
                [("Content-Type", "text/html; charset=utf-8"), ("Location", location)],
            )
        result = await self.target.transform(
            etl,
            bucket,
            obj.name,
            etl_args=etl_args,
            pipeline=stages,
            latest_ver=latest,
        )
        if result.error is not None:
            if result.error.msg == MSG_SKIP:
                return Reply(204)
            return self._error(request, result.error.ecode or 500, result.error.msg)
        status = result.status if result.status not in (0, 202) else 200
        return Reply(status, result.content or b"")


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    if not value:
        return None
    match = _RANGE_RE.match(value.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        length = int(last)
        return max(size - length, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def _html_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )
