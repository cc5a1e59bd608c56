"""Offline bucket-to-bucket transform jobs (``etl-bck``), run on every emulated target."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aisetl.target.driver import TransformResult
from aisetl.target.wire import MSG_NOT_FOUND, ObjectName, ObjError, new_job_id
from aisetl.target.ws import WSPool

if TYPE_CHECKING:
    from aisetl.target.cluster import ETL, AsyncCluster, AsyncTarget

#: Offline ws pool size per target is ``multiplier x OFFLINE_WS_FACTOR`` (§7.2).
OFFLINE_WS_FACTOR = 4


@dataclass
class JobProgress:
    """Counts so far, handed to a job's progress callback."""

    job_id: str
    total: int
    done: int
    failed: int
    skipped: int
    bytes_in: int
    bytes_out: int
    elapsed: float


@dataclass
class JobReport:
    """The outcome of a job."""

    job_id: str
    etl: str
    src: str
    dst: str
    total: int = 0  # source objects selected
    stored: int = 0  # results the targets stored (locally or at a remote owner)
    delivered: int = 0  # results delivered by direct put (204 / ws text)
    skipped: int = 0  # destination already existed (skip_existing)
    failed: int = 0  # objects with an error (not-found and lost included)
    lost: int = 0  # failures a target takes for success (ws text replies), in failed too
    not_found: int = 0
    bytes_in: int = 0  # source bytes of processed objects
    bytes_out: int = 0  # bytes stored by the targets plus bytes received by direct put
    errors: list[ObjError] = field(default_factory=list)
    ws_errors: list[str] = field(default_factory=list)  # ws read errors a target records
    duration: float = 0.0
    aborted: bool = False
    abort_reason: str = ""

    @property
    def ok(self) -> bool:
        """Finished without abort and without failed objects."""
        return not self.aborted and self.failed == 0

    @property
    def done(self) -> int:
        """Objects processed (stored, delivered, skipped or failed)."""
        return self.stored + self.delivered + self.skipped + self.failed


def rename_with(ext: Mapping[str, str] | None = None, prepend: str = "") -> Callable[[str], str]:
    """Destination naming as a target's ``TCBMsg.ToName``: replace extension, then prepend."""

    def rename(name: str) -> str:
        if ext:
            stem, dot, suffix = name.rpartition(".")
            if dot and suffix in ext:
                name = stem + "." + ext[suffix].lstrip(".")
        return prepend + name

    return rename


@dataclass
class JobSpec:
    """What an offline transform job does (see :meth:`AsyncCluster.run_job`)."""

    etl: ETL
    src: str
    dst: str
    prefix: str = ""
    rename: Callable[[str], str] | None = None
    pipeline: Sequence[ETL] = ()
    comm: str | None = None  # default: the ETL's own comm type
    fqn: bool | None = None  # default: the cluster's pass_fqn
    workers: int = 16  # concurrent objects per target
    continue_on_error: bool = False
    skip_existing: bool = False
    progress: Callable[[JobProgress], None] | None = None
    progress_interval: float = 0.2
    max_errors: int = 1000
    job_id: str = ""
    #: A real target's offline jobs send no ``etl_args``; ``aisetl run --args`` may.
    etl_args: str = ""


class Job:
    """One running job: :meth:`run` it; ``report`` grows as it goes; :meth:`stop` ends it early.

    (:func:`run_job` is the one-call form.)
    """

    def __init__(self, cluster: AsyncCluster, spec: JobSpec) -> None:
        self.cluster = cluster
        self.spec = spec
        self.rename = spec.rename or (lambda name: name)
        self.report = JobReport(spec.job_id or new_job_id(), spec.etl.name, spec.src, spec.dst)
        self.started = time.monotonic()
        self.last_progress = 0.0
        self.callback = spec.progress
        self.abort: str = ""

    def stop(self, reason: str) -> None:
        """End the job as an abort does: no new object starts; ``reason`` goes in the report."""
        self.abort = self.abort or reason

    async def run(self) -> JobReport:
        """Run every target's part of the job; the report, once all are done."""
        spec, report = self.spec, self.report
        self.cluster.bucket(spec.dst)
        work = []
        for target in self.cluster.targets:
            bucket = target.mountpath.lookup(spec.src)
            if bucket is not None:
                names = bucket.list(spec.prefix)
                report.total += len(names)
                work.append((target, names))
        await asyncio.gather(*(self._run_target(target, names) for target, names in work))
        for target in self.cluster.targets:
            received = target.endpoint.received.pop(report.job_id, None)
            if received is not None:
                report.bytes_out += received[1]
        report.duration = time.monotonic() - self.started
        self._progress(force=True)
        report.aborted = bool(self.abort)
        report.abort_reason = self.abort
        return report

    async def _run_target(self, target: AsyncTarget, names: list[str]) -> None:
        if not names:
            return
        spec = self.spec
        pool: WSPool | None = None
        if (spec.comm or spec.etl.comm) == "ws":
            size = self.cluster.multiplier * OFFLINE_WS_FACTOR
            pool = self.cluster.ws_pool(spec.etl, target.index, size)
            try:
                await pool.open()
            except Exception as exc:
                self._fail_all(target, names, str(exc))
                return
        queue: Iterator[str] = iter(names)
        try:
            workers = max(1, min(spec.workers, len(names)))
            await asyncio.gather(*(self._worker(target, queue, pool) for _ in range(workers)))
        finally:
            if pool is not None:
                self.report.ws_errors.extend(pool.errors)
                await pool.close()

    def _fail_all(self, target: AsyncTarget, names: list[str], message: str) -> None:
        bucket = target.mountpath.lookup(self.spec.src)
        for name in names:
            cname = bucket.object_name(name).cname if bucket else name
            self._error(ObjError(cname, message))
        self.abort = self.abort or message

    async def _worker(self, target: AsyncTarget, names: Iterator[str], pool: WSPool | None) -> None:
        spec, report = self.spec, self.report
        bucket = target.resolve(spec.src)
        for name in names:
            if self.abort:
                return
            dst = ObjectName("ais", "", spec.dst, self.rename(name))
            if spec.skip_existing and self._exists(dst, target.index):
                report.skipped += 1
                self._progress()
                continue
            try:
                size = bucket.size(name)
            except OSError:
                size = 0
            try:
                result = await target.copy(
                    spec.etl,
                    bucket,
                    name,
                    dst,
                    comm=spec.comm,
                    fqn=spec.fqn,
                    etl_args=spec.etl_args,
                    pipeline=spec.pipeline,
                    job_id=report.job_id,
                    ws_pool=pool,
                )
            except Exception as exc:  # a bad name, a full disk: the object fails, not the job
                result = TransformResult(bucket.object_name(name).cname).fail(
                    f"{type(exc).__name__}: {exc}"
                )
            report.bytes_in += size
            self._account(result)
            self._progress()

    def _exists(self, dst: ObjectName, source: int) -> bool:
        owner = self.cluster.targets[self.cluster.owner(dst, source)]
        bucket = owner.mountpath.lookup(dst.bucket)
        return bucket is not None and bucket.exists(dst.name)

    def _account(self, result: TransformResult) -> None:
        report = self.report
        if result.lost is not None:  # a target records nothing and goes on; we report it
            report.failed += 1
            report.lost += 1
            self._error(ObjError(result.obj_name, result.lost))
        elif result.error is not None:
            report.failed += 1
            self._error(result.error)
            if result.error.msg == MSG_NOT_FOUND:
                report.not_found += 1
            elif not self.spec.continue_on_error and not self.abort:
                self.abort = result.error.msg
        elif result.delivered:
            report.delivered += 1
        else:
            report.stored += 1
            report.bytes_out += len(result.content or b"")

    def _error(self, error: ObjError) -> None:
        if len(self.report.errors) < self.spec.max_errors:
            self.report.errors.append(error)

    def _progress(self, force: bool = False) -> None:
        callback = self.callback
        if callback is None:
            return
        now = time.monotonic()
        if not force and now - self.last_progress < self.spec.progress_interval:
            return
        self.last_progress = now
        report = self.report
        progress = JobProgress(
            report.job_id,
            report.total,
            report.done,
            report.failed,
            report.skipped,
            report.bytes_in,
            report.bytes_out,
            now - self.started,
        )
        try:
            callback(progress)
        except Exception as exc:  # a broken callback stops the job, cleanly
            self.callback = None
            self.abort = self.abort or f"progress callback failed: {exc!r}"


async def run_job(cluster: AsyncCluster, spec: JobSpec) -> JobReport:
    """Run ``spec`` on every target that holds part of the source bucket; return the report.

    Each target lists its own source objects, transforms them with ``spec.workers``
    concurrent requests (ws: over a fresh pool of ``multiplier x 4`` connections, dropped at
    the end), and builds hops per object (§8.1). The first error other than "not found"
    aborts the job unless ``continue_on_error``.
    """
    return await Job(cluster, spec).run()
