"""Synchronous front end: the asyncio core runs on a background thread.

``with EmulatedTarget() as tgt: ...`` is all a test or a CLI needs; :class:`Cluster` runs
several targets. Every call blocks until its work on the emulator's thread is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from aisetl.http_client import Response
from aisetl.target.cluster import (
    ETL,
    AsyncCluster,
    AsyncTarget,
    Destination,
    Placement,
)
from aisetl.target.driver import RetryPolicy, TransformResult
from aisetl.target.endpoint import PutRecord
from aisetl.target.faults import Faults
from aisetl.target.jobs import JobProgress, JobReport, JobSpec, rename_with, run_job
from aisetl.target.process import DEFAULT_INIT_TIMEOUT
from aisetl.target.record import Record
from aisetl.target.store import Bucket, Mountpath

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running forever on a daemon thread."""

    def __init__(self, name: str = "aisetl-target", use_uvloop: bool = False) -> None:
        if use_uvloop:
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result (raise its exception)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "a blocking emulator call was made on the emulator's own thread "
                "(e.g. from a progress callback); use the async API there"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"emulator call did not finish within {timeout:g} s") from None
        except BaseException:
            future.cancel()
            raise

    def close(self, timeout: float = 10.0) -> None:
        """Cancel what is left, stop the loop and join the thread."""
        if not self._thread.is_alive():
            return

        async def _cancel_all() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(timeout + 1)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


class Target:
    """One emulated target, driven synchronously (see :class:`AsyncTarget`)."""

    def __init__(self, cluster: Cluster, core: AsyncTarget) -> None:
        self.cluster = cluster
        self.core = core

    def __repr__(self) -> str:
        return f"<Target {self.id} {self.url}>"

    @property
    def id(self) -> str:
        """Target ID, e.g. ``t0``."""
        return self.core.id

    @property
    def index(self) -> int:
        """Position in the cluster."""
        return self.core.index

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the target's endpoint."""
        return self.core.url

    @property
    def faults(self) -> Faults:
        """Faults injected into requests to this target's endpoint."""
        return self.core.faults

    @property
    def mountpath(self) -> Mountpath:
        """Where this target keeps its buckets."""
        return self.core.mountpath

    @property
    def puts(self) -> list[PutRecord]:
        """Objects stored through the ETL object endpoint (direct puts), oldest first."""
        return list(self.core.endpoint.puts)

    def bucket(self, name: str, provider: str = "ais", namespace: str = "") -> Bucket:
        """This target's bucket ``name`` (created when missing)."""
        return self.core.bucket(name, provider, namespace)

    def attach_bucket(
        self, name: str, folder: str | os.PathLike[str], provider: str = "ais"
    ) -> Bucket:
        """Serve an existing folder as bucket ``name``; FQNs are the files' own paths."""
        return self.core.mountpath.attach(name, folder, provider)

    def transform(
        self,
        etl: ETL | str,
        bucket: Bucket | str,
        name: str,
        *,
        comm: str | None = None,
        fqn: bool | None = None,
        etl_args: str = "",
        pipeline: Sequence[ETL | str] = (),
        dst: Destination | None = None,
        job_id: str = "",
        latest_ver: bool = False,
    ) -> TransformResult:
        """Send one object to the ETL's server over its comm type (or ``comm``).

        Without ``dst``: an inline request. With ``dst``: offline semantics; a destination
        hop is added when another target owns ``dst`` (see :meth:`copy` to also store).
        """
        return self.cluster.run(
            self.core.transform(
                self.cluster.etl(etl),
                bucket,
                name,
                comm=comm,
                fqn=fqn,
                etl_args=etl_args,
                pipeline=self.cluster.etl_list(pipeline),
                dst=dst,
                job_id=job_id,
                latest_ver=latest_ver,
            )
        )

    def hpush(
        self, etl: ETL | str, bucket: Bucket | str, name: str, **options: Any
    ) -> TransformResult:
        """:meth:`transform` over hpush (a PUT to the server)."""
        return self.transform(etl, bucket, name, comm="hpush", **options)

    def hpull(
        self, etl: ETL | str, bucket: Bucket | str, name: str, **options: Any
    ) -> TransformResult:
        """:meth:`transform` over hpull (the target's own GET to the server)."""
        return self.transform(etl, bucket, name, comm="hpull", **options)

    def ws(
        self, etl: ETL | str, bucket: Bucket | str, name: str, **options: Any
    ) -> TransformResult:
        """:meth:`transform` over the ETL's inline ws pool."""
        return self.transform(etl, bucket, name, comm="ws", **options)

    def copy(
        self,
        etl: ETL | str,
        bucket: Bucket | str,
        name: str,
        dst: Destination,
        *,
        comm: str | None = None,
        fqn: bool | None = None,
        etl_args: str = "",
        pipeline: Sequence[ETL | str] = (),
    ) -> TransformResult:
        """Single-object copy with transform into ``dst`` (hpush/hpull only, §7.7)."""
        return self.cluster.run(
            self.core.copy(
                self.cluster.etl(etl),
                bucket,
                name,
                dst,
                comm=comm,
                fqn=fqn,
                etl_args=etl_args,
                pipeline=self.cluster.etl_list(pipeline),
            )
        )

    def get(
        self,
        bucket: str,
        name: str,
        *,
        etl: ETL | str | None = None,
        etl_args: str = "",
        pipeline: Sequence[ETL | str] = (),
        latest_ver: bool = False,
        follow_redirects: bool = True,
    ) -> Response:
        """A client's GET through this target's endpoint (inline transform when ``etl``)."""
        return self.cluster.run(
            self.core.get(
                bucket,
                name,
                etl=self.cluster.etl(etl) if etl is not None else None,
                etl_args=etl_args,
                pipeline=self.cluster.etl_list(pipeline),
                latest_ver=latest_ver,
                follow_redirects=follow_redirects,
            )
        )

    def drop_ws(self, etl: ETL | str, index: int | None = None) -> None:
        """Drop this target's inline ws connection(s) to the ETL without a close frame."""
        pool = self.cluster.etl(etl).inline_pools[self.index]
        self.cluster.call(lambda: pool.drop(index))

    def close_ws(self, etl: ETL | str, index: int, code: int = 1000) -> None:
        """Close one inline ws connection from the target side with a close frame."""
        pool = self.cluster.etl(etl).inline_pools[self.index]
        self.cluster.run(pool.close_connection(index, code))


class Cluster:
    """Emulated targets on 127.0.0.1 with a synchronous API.

    ``root``: folder for mountpaths and server logs (a temp folder, removed at close, when
    omitted). ``placement``: ``"hash"`` (default), ``"local"``, ``"remote"`` or a function
    ``(uname, source index, targets) -> owner index``. ``time_scale`` scales retry sleeps;
    ``obj_timeout`` is the per-attempt timeout (Go default 10 s); ``faithful`` reproduces the
    target's hpush URL defects (§5.6); ``pass_fqn=False`` is the cluster feature
    ``Do-not-Allow-Passing-FQN-to-ETL`` (bytes instead of paths); ``multiplier`` is
    ``tcb.bundle_multiplier`` (ws pools: N inline, N x 4 per job); ``ws_timeout`` bounds what a
    real target leaves unbounded (a ws reply, a client GET), so the emulator always stops.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        targets: int = 1,
        placement: Placement = "hash",
        obj_timeout: float = 10.0,
        time_scale: float = 1.0,
        faithful: bool = True,
        multiplier: int = 2,
        record: int = 10_000,
        ws_timeout: float = 60.0,
        pass_fqn: bool = True,
        policy: RetryPolicy | None = None,
        use_uvloop: bool = False,
    ) -> None:
        self.core = AsyncCluster(
            root,
            targets=targets,
            placement=placement,
            policy=policy or RetryPolicy(time_scale=time_scale, obj_timeout=obj_timeout),
            faithful=faithful,
            multiplier=multiplier,
            record=record,
            ws_timeout=ws_timeout,
            pass_fqn=pass_fqn,
        )
        self.targets = [Target(self, core) for core in self.core.targets]
        self._use_uvloop = use_uvloop
        self._thread: LoopThread | None = None
        self._closed = False

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Cluster:
        """Start the loop thread and every target's endpoint (a cluster runs once)."""
        if self._closed:
            raise RuntimeError("this cluster was closed; create a new one")
        if self._thread is None:
            self._thread = LoopThread(use_uvloop=self._use_uvloop)
            try:
                self.run(self.core.start())
            except BaseException:
                self._thread.close()
                self._thread = None
                raise
        return self

    def close(self) -> None:
        """Stop servers we started, endpoints, connections and the loop thread."""
        thread = self._thread
        if thread is None:
            return
        self._closed = True
        try:
            thread.run(self.core.close(), timeout=60)
        finally:
            thread.close()
            self._thread = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine of the async core on the emulator's thread and wait for it."""
        if self._thread is None:
            coro.close()
            raise RuntimeError("the cluster is not started (use it in a with block)")
        return self._thread.run(coro, timeout)

    def call(self, func: Callable[[], T]) -> T:
        """Run a plain function on the emulator's thread and wait for it."""

        async def _call() -> T:
            return func()

        return self.run(_call())

    @property
    def placement(self) -> Placement:
        """Who owns a destination object: ``hash``, ``local``, ``remote`` or a function."""
        return self.core.placement

    @placement.setter
    def placement(self, value: Placement) -> None:
        self.core.placement = value

    # --- ETLs ---------------------------------------------------------------------------

    @property
    def etls(self) -> dict[str, ETL]:
        """Registered ETLs by name."""
        return dict(self.core.etls)

    def etl(self, etl: ETL | str) -> ETL:
        """An ETL by name (or the ETL itself)."""
        if isinstance(etl, ETL):
            return etl
        found = self.core.etls.get(etl)
        if found is None:
            raise KeyError(f"no ETL named {etl!r}")
        return found

    def etl_list(self, etls: Sequence[ETL | str]) -> list[ETL]:
        """ETLs by name (or themselves)."""
        return [self.etl(item) for item in etls]

    def launch(
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
        """Start a server process for ETL ``name`` (``{port}`` in ``argv`` is expanded)."""
        return self.run(
            self.core.launch(
                name,
                argv,
                comm=comm,
                env=env,
                top_env=top_env,
                cwd=cwd,
                direct_put=direct_put,
                init_timeout=init_timeout,
                obj_timeout=obj_timeout,
                per_target=per_target,
                port=port,
            )
        )

    def attach(
        self,
        name: str,
        url: str | Sequence[str],
        *,
        comm: str = "hpush",
        secret: str | None = None,
        direct_put: bool = True,
        obj_timeout: float | None = None,
    ) -> ETL:
        """Register an already running server as ETL ``name``."""
        return self.run(
            self.core.attach(
                name,
                url,
                comm=comm,
                secret=secret,
                direct_put=direct_put,
                obj_timeout=obj_timeout,
            )
        )

    def stop(self, etl: ETL | str) -> None:
        """Stop an ETL (its ws pools and the servers we started)."""
        self.run(self.core.stop(etl))

    # --- data and jobs ------------------------------------------------------------------

    def bucket(self, name: str, provider: str = "ais", namespace: str = "") -> list[Bucket]:
        """Create bucket ``name`` on every target; return each target's part."""
        return self.core.bucket(name, provider, namespace)

    def put(self, bucket: str, name: str, data: bytes) -> int:
        """Store an object on its owner target; return the owner's index."""
        return self.core.put(bucket, name, data)

    def get(self, bucket: str, name: str) -> bytes:
        """An object's bytes from whichever target holds it (``KeyError`` when none)."""
        found = self.core.find(bucket, name)
        if found is None:
            raise KeyError(f"ais://{bucket}/{name} does not exist on any target")
        return found[1].get(name)

    def run_job(
        self,
        etl: ETL | str,
        src: str,
        dst: str,
        *,
        prefix: str = "",
        ext: Mapping[str, str] | None = None,
        prepend: str = "",
        rename: Callable[[str], str] | None = None,
        pipeline: Sequence[ETL | str] = (),
        comm: str | None = None,
        fqn: bool | None = None,
        workers: int = 16,
        continue_on_error: bool = False,
        skip_existing: bool = False,
        progress: Callable[[JobProgress], None] | None = None,
        timeout: float | None = None,
    ) -> JobReport:
        """Transform bucket ``src`` into ``dst`` on every target (an ``etl-bck`` job).

        ``ext`` (e.g. ``{"flac": "wav"}``) and ``prepend`` rename objects as AIStore does;
        ``rename`` is any other mapping. ``progress`` is called on the emulator's thread and
        must be quick.
        """
        spec = JobSpec(
            etl=self.etl(etl),
            src=src,
            dst=dst,
            prefix=prefix,
            rename=rename or (rename_with(ext, prepend) if ext or prepend else None),
            pipeline=self.etl_list(pipeline),
            comm=comm,
            fqn=fqn,
            workers=workers,
            continue_on_error=continue_on_error,
            skip_existing=skip_existing,
            progress=progress,
        )
        return self.run(run_job(self.core, spec), timeout)

    def records(self, side: str | None = None, **filters: Any) -> list[Record]:
        """Recorded exchanges (see :class:`~aisetl.target.record.Recorder.records`)."""
        return self.core.recorder.records(side, **filters)

    def clear_records(self) -> None:
        """Forget recorded exchanges."""
        self.core.recorder.clear()


class EmulatedTarget(Target):
    """A single emulated target with its own loop thread: ``with EmulatedTarget() as tgt``.

    Takes the same options as :class:`Cluster` (without ``targets``) and also offers its
    cluster-wide calls: :meth:`launch`, :meth:`attach`, :meth:`stop`, :meth:`run_job`.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, **options: Any) -> None:
        cluster = Cluster(root, targets=1, **options)
        super().__init__(cluster, cluster.core.targets[0])

    def __enter__(self) -> EmulatedTarget:
        self.cluster.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cluster.close()

    def start(self) -> EmulatedTarget:
        """Start the target (same as entering the ``with`` block)."""
        self.cluster.start()
        return self

    def close(self) -> None:
        """Stop everything (same as leaving the ``with`` block)."""
        self.cluster.close()

    def launch(self, name: str, argv: Sequence[str], **options: Any) -> ETL:
        """See :meth:`Cluster.launch`."""
        return self.cluster.launch(name, argv, **options)

    def attach(self, name: str, url: str | Sequence[str], **options: Any) -> ETL:
        """See :meth:`Cluster.attach`."""
        return self.cluster.attach(name, url, **options)

    def stop(self, etl: ETL | str) -> None:
        """See :meth:`Cluster.stop`."""
        self.cluster.stop(etl)

    def run_job(self, etl: ETL | str, src: str, dst: str, **options: Any) -> JobReport:
        """See :meth:`Cluster.run_job`."""
        return self.cluster.run_job(etl, src, dst, **options)

    def records(self, side: str | None = None, **filters: Any) -> list[Record]:
        """See :meth:`Cluster.records`."""
        return self.cluster.records(side, **filters)

    def clear_records(self) -> None:
        """See :meth:`Cluster.clear_records`."""
        self.cluster.clear_records()
