"""Emulated targets, the cluster they form, and the ETLs registered on it (async core)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from aisetl.http_client import HTTPClient, Response
from aisetl.target.driver import Driver, RetryPolicy, Task, TransformResult
from aisetl.target.endpoint import Endpoint
from aisetl.target.faults import Faults
from aisetl.target.http import HTTPServer
from aisetl.target.jobs import JobReport, JobSpec, run_job
from aisetl.target.process import DEFAULT_INIT_TIMEOUT, ServerProcess, start_server
from aisetl.target.record import Recorder
from aisetl.target.store import Bucket, Mountpath
from aisetl.target.wire import (
    COMM_TYPES,
    ObjectName,
    destination_hop,
    etl_target_url,
    new_secret,
    quote_object_path,
    stable_owner,
    validate_etl_name,
)
from aisetl.target.ws import WSPool

#: Decides which target owns a destination object: ``(uname, source index, targets)``.
PlacementFunc = Callable[[str, int, int], int]
Placement = str | PlacementFunc
#: Where a transformed object goes: an :class:`ObjectName` or ``(bucket, object)``.
Destination = ObjectName | tuple[str, str]


@dataclass
class ServerAddress:
    """Where a target reaches one ETL server, and the process when we started it."""

    host: str
    port: int
    process: ServerProcess | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` — the ETL-stage hop form (no path, no trailing slash)."""
        return f"http://{self.host}:{self.port}"


@dataclass(eq=False)
class ETL:
    """An ETL registered on the cluster: name, secret, comm type, and its server(s)."""

    name: str
    comm: str
    secret: str
    direct_put: bool = True
    obj_timeout: float = 10.0
    servers: dict[int, ServerAddress] = field(default_factory=dict)
    target_urls: dict[int, str] = field(default_factory=dict)
    inline_pools: dict[int, WSPool] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<ETL {self.name} {self.comm}:// servers={[s.url for s in self.servers.values()]}>"

    def _index(self, target: int) -> int:
        if target in self.servers:
            return target
        for index in self.servers:  # a shared server serves every target
            return index
        raise LookupError(f"ETL {self.name!r} has no server")

    def server(self, target: int = 0) -> ServerAddress:
        """The server that target ``target`` talks to (a shared server serves every target)."""
        return self.servers[self._index(target)]

    def url(self, target: int = 0) -> str:
        """``http://host:port`` of the server as seen by target ``target``."""
        return self.server(target).url

    def target_url(self, target: int = 0) -> str:
        """The ``AIS_TARGET_URL`` of the server that target ``target`` talks to."""
        return self.target_urls[self._index(target) if self.servers else target]

    def logs(self, target: int = 0) -> str:
        """What the server of target ``target`` printed (empty for attached servers)."""
        process = self.server(target).process
        return process.log() if process is not None else ""

    @property
    def processes(self) -> list[ServerProcess]:
        """Server processes we started for this ETL."""
        return [s.process for s in self.servers.values() if s.process is not None]


class AsyncTarget:
    """One emulated target: a mountpath, an HTTP endpoint, and a driver for ETL servers."""

    def __init__(self, cluster: AsyncCluster, index: int, root: Path) -> None:
        self.cluster = cluster
        self.index = index
        self.id = f"t{index}"
        self.mountpath = Mountpath(root)
        self.endpoint = Endpoint(self)
        self.faults = Faults(refuse_hook=self._refuse)
        self.server = HTTPServer(
            self.endpoint, faults=self.faults, recorder=cluster.recorder, node=self.id
        )
        self.driver = Driver(
            cluster.client,
            node=self.id,
            policy=cluster.policy,
            faithful=cluster.faithful,
            recorder=cluster.recorder,
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<AsyncTarget {self.id} {self.url}>"

    async def start(self) -> None:
        """Start the HTTP endpoint."""
        self._loop = asyncio.get_running_loop()
        await self.server.start()

    async def close(self) -> None:
        """Stop the HTTP endpoint."""
        await self.server.close()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the target's intra-cluster data URL."""
        return self.server.url

    def _refuse(self, seconds: float) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("target is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.server.refuse(seconds)
        else:
            asyncio.run_coroutine_threadsafe(self._refuse_async(seconds), loop).result(10)

    async def _refuse_async(self, seconds: float) -> None:
        self.server.refuse(seconds)

    def bucket(self, name: str, provider: str = "ais", namespace: str = "") -> Bucket:
        """This target's part of bucket ``name`` (created when missing)."""
        return self.mountpath.bucket(name, provider, namespace)

    def resolve(self, bucket: Bucket | str) -> Bucket:
        """A bucket given by name on this target, or the bucket itself."""
        if isinstance(bucket, Bucket):
            return bucket
        found = self.mountpath.lookup(bucket)
        if found is None:
            raise KeyError(f"bucket {bucket!r} does not exist on target {self.id}")
        return found

    def hops(
        self,
        pipeline: Sequence[ETL] = (),
        dst: Destination | None = None,
        job_id: str = "",
    ) -> tuple[tuple[str, ...], int | None]:
        """The hop list for an object (§8.1) and the destination owner's index (if any)."""
        hops = [stage.url(self.index) for stage in pipeline]
        owner = None
        if dst is not None:
            obj = as_object_name(dst)
            owner = self.cluster.owner(obj, self.index)
            if owner != self.index:
                hops.append(destination_hop(self.cluster.targets[owner].url, obj.uname, job_id))
        return tuple(hops), owner

    async def transform(
        self,
        etl: ETL,
        bucket: Bucket | str,
        name: str,
        *,
        comm: str | None = None,
        fqn: bool | None = None,
        etl_args: str = "",
        pipeline: Sequence[ETL] = (),
        dst: Destination | None = None,
        job_id: str = "",
        latest_ver: bool = False,
        ws_pool: WSPool | None = None,
    ) -> TransformResult:
        """Send one object to ``etl``'s server as this target would and interpret the answer.

        ``fqn``: pass the object's path (default: the cluster's ``pass_fqn``) or its bytes.
        Without ``dst`` it is an inline request (a 204 answer is an error). With ``dst`` the
        destination hop is added when another target owns the destination; the result is
        returned, not stored (see :meth:`copy`).
        """
        hops, owner = self.hops(pipeline, dst, job_id)
        task = Task(
            self.resolve(bucket),
            name,
            fqn=self.cluster.pass_fqn if fqn is None else fqn,
            etl_args=etl_args,
            hops=hops,
            sink=owner is None or owner == self.index,
            inline=dst is None,
            latest_ver=latest_ver,
        )
        kind = comm or etl.comm
        server = etl.server(self.index)
        if kind == "hpush":
            return await self.driver.hpush(server.host, server.port, task, etl.obj_timeout)
        if kind == "hpull":
            return await self.driver.hpull(server.host, server.port, task, etl.obj_timeout)
        if kind == "ws":
            pool = ws_pool or etl.inline_pools.get(self.index)
            if pool is None:
                raise RuntimeError(f"ETL {etl.name} has no ws pool on target {self.id}")
            return await self.driver.ws(pool, task, self.cluster.ws_timeout)
        raise ValueError(f"unknown comm type {kind!r}: expected one of {COMM_TYPES}")

    async def copy(
        self,
        etl: ETL,
        bucket: Bucket | str,
        name: str,
        dst: Destination,
        *,
        comm: str | None = None,
        fqn: bool | None = None,
        etl_args: str = "",
        pipeline: Sequence[ETL] = (),
        job_id: str = "",
        ws_pool: WSPool | None = None,
    ) -> TransformResult:
        """Transform one object into ``dst``; store the result when the server returns it.

        Like a target, this stores returned bytes at the destination owner itself, also when
        the owner is another target (the fallback for servers that ignore the hop).
        """
        kind = comm or etl.comm
        if kind == "ws" and ws_pool is None:
            raise ValueError("single-object copy is not supported over ws:// (it needs a job)")
        obj = as_object_name(dst)
        result = await self.transform(
            etl,
            bucket,
            name,
            comm=kind,
            fqn=fqn,
            etl_args=etl_args,
            pipeline=pipeline,
            dst=obj,
            job_id=job_id,
            ws_pool=ws_pool,
        )
        if result.ok and result.content is not None:
            owner = self.cluster.targets[self.cluster.owner(obj, self.index)]
            try:
                owner.mountpath.bucket(obj.bucket, obj.provider, obj.namespace).put(
                    obj.name, result.content
                )
            except (OSError, ValueError) as exc:
                result.fail(f"failed to store {obj.cname}: {exc}")
        return result

    async def get(
        self,
        bucket: str,
        name: str,
        *,
        etl: ETL | None = None,
        etl_args: str = "",
        pipeline: Sequence[ETL] = (),
        latest_ver: bool = False,
        follow_redirects: bool = True,
    ) -> Response:
        """A client GET of ``/v1/objects/<bucket>/<name>`` on this target (inline transform).

        For hpull ETLs the 307 is followed, as a client would, unless ``follow_redirects``
        is false.
        """
        query = []
        if etl is not None:
            query.append(f"etl_name={etl.name}")
            if etl_args:
                query.append("etl_args=" + quote(etl_args, safe=""))
            if pipeline:
                query.append("etl_pipeline=" + ",".join(stage.name for stage in pipeline))
            if latest_ver:
                query.append("latest-ver=true")
        uri = f"/v1/objects/{bucket}/{quote_object_path(name)}"
        if query:
            uri += "?" + "&".join(query)
        client = self.cluster.client
        response = await client.request("GET", self.url + uri, timeout=self.cluster.ws_timeout)
        location = response.header("location")
        if follow_redirects and response.status == 307 and location:
            return await client.request("GET", location, timeout=self.cluster.ws_timeout)
        return response


def as_object_name(dst: Destination) -> ObjectName:
    """An :class:`ObjectName` from ``(bucket, object)`` or an :class:`ObjectName`."""
    if isinstance(dst, ObjectName):
        return dst
    bucket, name = dst
    return ObjectName("ais", "", bucket, name)


class AsyncCluster:
    """Targets on 127.0.0.1 with folders as mountpaths, one HTTP client, one recorder."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        targets: int = 1,
        placement: Placement = "hash",
        policy: RetryPolicy | None = None,
        faithful: bool = True,
        multiplier: int = 2,
        record: int = 10_000,
        ws_timeout: float = 60.0,
        pass_fqn: bool = True,
    ) -> None:
        """See :class:`aisetl.target.Cluster` for the options."""
        if targets < 1:
            raise ValueError("a cluster needs at least one target")
        if not 1 <= multiplier <= 16:
            raise ValueError("multiplier (tcb.bundle_multiplier) must be 1 to 16")
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="aisetl-cluster-") if root is None else root)
        self.placement = placement
        self.policy = policy or RetryPolicy()
        self.faithful = faithful
        self.multiplier = multiplier
        self.ws_timeout = ws_timeout
        #: False = the cluster feature ``Do-not-Allow-Passing-FQN-to-ETL`` (send bytes instead)
        self.pass_fqn = pass_fqn
        self.recorder = Recorder(record)
        self.client = HTTPClient()
        self.etls: dict[str, ETL] = {}
        self.targets = [AsyncTarget(self, i, self.root / f"t{i}") for i in range(targets)]
        self._started = False

    async def __aenter__(self) -> AsyncCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every target's endpoint."""
        for target in self.targets:
            await target.start()
        self._started = True

    async def run_job(self, spec: JobSpec) -> JobReport:
        """Run an offline transform job (see :func:`aisetl.target.jobs.run_job`)."""
        return await run_job(self, spec)

    async def close(self) -> None:
        """Stop all ETLs we started, every endpoint and connection; remove our temp root."""
        await asyncio.gather(*(self.stop(etl) for etl in list(self.etls.values())))
        for target in self.targets:
            await target.close()
        await self.client.close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- placement ----------------------------------------------------------------------

    def owner(self, obj: ObjectName, source: int = 0) -> int:
        """Index of the target that owns ``obj`` (only targets that have its bucket count)."""
        candidates = [
            t.index
            for t in self.targets
            if t.mountpath.lookup(obj.bucket, obj.provider, obj.namespace) is not None
        ] or [t.index for t in self.targets]
        placement = self.placement
        if callable(placement):
            return placement(obj.uname, source, len(self.targets))
        if placement == "local":
            return source if source in candidates else candidates[0]
        if placement == "remote":
            others = [i for i in candidates if i != source]
            return others[0] if others else candidates[0]
        if placement == "hash":
            ids = [self.targets[i].id for i in candidates]
            return candidates[stable_owner(obj.uname, ids)]
        raise ValueError(f"unknown placement {placement!r}: use hash, local, remote or a function")

    # --- buckets ------------------------------------------------------------------------

    def bucket(self, name: str, provider: str = "ais", namespace: str = "") -> list[Bucket]:
        """Create bucket ``name`` on every target (each target holds its own part)."""
        return [t.bucket(name, provider, namespace) for t in self.targets]

    def put(self, bucket: str, name: str, data: bytes) -> int:
        """Store an object on the target that owns it; return that target's index."""
        obj = ObjectName("ais", "", bucket, name)
        self.bucket(bucket)
        owner = self.owner(obj)
        self.targets[owner].bucket(bucket).put(name, data)
        return owner

    def find(self, bucket: str, name: str) -> tuple[int, Bucket] | None:
        """The target that holds object ``name`` and its bucket, or ``None``."""
        for target in self.targets:
            found = target.mountpath.lookup(bucket)
            if found is not None and found.exists(name):
                return target.index, found
        return None

    # --- ETLs ---------------------------------------------------------------------------

    def _register(
        self, name: str, comm: str, secret: str | None, direct_put: bool, obj_timeout: float
    ) -> ETL:
        validate_etl_name(name)
        if comm not in COMM_TYPES:
            raise ValueError(f"unknown comm-type {comm!r}: use {', '.join(COMM_TYPES)}")
        if comm == "ws" and not direct_put:
            raise ValueError("WebSocket without direct put is not supported yet")
        if name in self.etls:
            raise ValueError(f"ETL {name!r} already exists")
        etl = ETL(name, comm, secret or new_secret(), direct_put, obj_timeout)
        for target in self.targets:
            etl.target_urls[target.index] = etl_target_url(target.url, name, etl.secret)
        self.etls[name] = etl
        return etl

    async def launch(
        self,
        name: str,
        argv: Sequence[str],
        *,
        comm: str = "hpush",
        env: Mapping[str, str] | None = None,
        top_env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        direct_put: bool = True,
        init_timeout: float = DEFAULT_INIT_TIMEOUT,
        obj_timeout: float | None = None,
        per_target: bool = True,
        port: int | None = None,
    ) -> ETL:
        """Start the server ``argv`` (``{port}`` expanded) for ETL ``name`` and wait for it.

        ``env`` is the spec's ``runtime.env``, ``top_env`` the init message's top-level
        ``env``, applied after the target's own variables (PROTOCOL.md §2.1).
        ``per_target``: one server per target, each with its own ``AIS_TARGET_URL`` (as on a
        real cluster); otherwise one server, bound to target 0, serves every target.
        """
        etl = self._register(name, comm, None, direct_put, obj_timeout or self.policy.obj_timeout)
        targets = self.targets if per_target else self.targets[:1]
        if port is not None and len(targets) > 1:
            raise ValueError("a fixed port needs per_target=False or a single target")
        try:
            processes = await asyncio.gather(
                *(
                    start_server(
                        argv,
                        target_url=etl.target_urls[t.index],
                        client=self.client,
                        log_path=self.root / "logs" / f"{name}-{t.id}.log",
                        direct_put=direct_put,
                        env=env,
                        top_env=top_env,
                        cwd=cwd,
                        port=port,
                        init_timeout=init_timeout,
                    )
                    for t in targets
                ),
                return_exceptions=True,
            )
            failures = [p for p in processes if isinstance(p, BaseException)]
            for target, process in zip(targets, processes, strict=True):
                if isinstance(process, ServerProcess):
                    etl.servers[target.index] = ServerAddress(process.host, process.port, process)
            if failures:
                raise failures[0]
            if comm == "ws":
                await self._open_inline_pools(etl)
        except BaseException:
            await self.stop(etl)
            raise
        return etl

    async def attach(
        self,
        name: str,
        url: str | Sequence[str],
        *,
        comm: str = "hpush",
        secret: str | None = None,
        direct_put: bool = True,
        obj_timeout: float | None = None,
    ) -> ETL:
        """Register an already running server (one URL, or one per target).

        Give ``secret`` when the server was started with an ``AIS_TARGET_URL`` that names it.
        """
        etl = self._register(name, comm, secret, direct_put, obj_timeout or self.policy.obj_timeout)
        urls = [url] if isinstance(url, str) else list(url)
        for index, item in enumerate(urls):
            parts = urlsplit(item)
            etl.servers[index] = ServerAddress(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            if comm == "ws":
                await self._open_inline_pools(etl)
        except BaseException:
            await self.stop(etl)
            raise
        return etl

    def ws_url(self, etl: ETL, target: int) -> str:
        """``ws://host:port/ws`` of the server target ``target`` uses."""
        server = etl.server(target)
        return f"ws://{server.host}:{server.port}/ws"

    def ws_pool(self, etl: ETL, target: int, size: int) -> WSPool:
        """A new (unopened) ws pool from target ``target`` to ``etl``'s server."""
        return WSPool(
            self.ws_url(etl, target),
            size,
            name=etl.name,
            node=self.targets[target].id,
            recorder=self.recorder,
        )

    async def _open_inline_pools(self, etl: ETL) -> None:
        for target in self.targets:
            pool = self.ws_pool(etl, target.index, self.multiplier)
            await pool.open()
            etl.inline_pools[target.index] = pool

    async def stop(self, etl: ETL | str) -> None:
        """Unregister an ETL, close its ws pools and stop the servers we started for it."""
        found = self.etls.pop(etl if isinstance(etl, str) else etl.name, None)
        if found is None:
            if isinstance(etl, str):
                return
            found = etl
        for pool in found.inline_pools.values():
            await pool.close()
        found.inline_pools.clear()
        await asyncio.gather(*(process.astop() for process in found.processes))
