"""Run the job of ``aisetl run``: finish cleanly on Ctrl-C, stop at once when a server dies.

Either way the report of what happened so far is kept, so ``--report`` is always written.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from aisetl.cli.watch import Death, ServerWatch
from aisetl.target import Cluster, Job, JobReport, JobSpec

#: Seconds between two checks of the servers while the job runs.
POLL = 0.1
#: Seconds a cancelled job gets to close its connections.
CANCEL_GRACE = 5.0
MSG_INTERRUPTED = "interrupted (Ctrl-C)"
#: Checks (POLL / 2 apart) for a server death after a job that ended with failures.
SETTLE_CHECKS = 20


@dataclass
class Outcome:
    """How the job ended: its report, and what stopped it early (if anything)."""

    report: JobReport
    interrupted: bool = False
    death: Death | None = None


class JobControl:
    """Runs one job on the emulator's loop and watches the servers while it runs.

    The first Ctrl-C stops handing out objects and lets the ones in flight finish; the second
    abandons them. A server that dies stops the job at once (its objects would only fail or
    hang), after ``on_death`` has been told.
    """

    def __init__(
        self,
        cluster: Cluster,
        spec: JobSpec,
        watch: ServerWatch,
        *,
        on_death: Callable[[Death], None],
        on_interrupt: Callable[[], None],
    ) -> None:
        self.cluster = cluster
        self.spec = spec
        self.watch = watch
        self.on_death = on_death
        self.on_interrupt = on_interrupt
        self.interrupts = 0  # Ctrl-C presses so far (set from the signal handler)

    def run(self) -> Outcome:
        """Run the job to its end (or its stop) and return the outcome."""
        with self._sigint():
            return self.cluster.run(self._main())

    @contextlib.contextmanager
    def _sigint(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self.interrupts += 1
            if self.interrupts > 2:  # the job does not stop: give up waiting for it
                raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    async def _main(self) -> Outcome:
        job = Job(self.cluster.core, self.spec)
        task = asyncio.ensure_future(job.run())
        told = 0
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL)
            if done:
                outcome = Outcome(task.result(), interrupted=told > 0)
                death = self.watch.check()
                for _ in range(SETTLE_CHECKS if outcome.report.failed else 0):
                    if death is not None:
                        break
                    await asyncio.sleep(POLL / 2)  # a dying server may take a moment to exit
                    death = self.watch.check()
                if death is not None:
                    self.on_death(death)
                    outcome.death = death
                return outcome
            death = self.watch.check()
            if death is not None:
                self.on_death(death)
                report = await self._cancel(job, task, death.message())
                return Outcome(report, interrupted=told > 0, death=death)
            if self.interrupts > told:
                told = self.interrupts
                if told == 1:
                    job.stop(MSG_INTERRUPTED)
                    self.on_interrupt()
                else:
                    report = await self._cancel(job, task, MSG_INTERRUPTED)
                    return Outcome(report, interrupted=True)

    @staticmethod
    async def _cancel(job: Job, task: asyncio.Future[JobReport], reason: str) -> JobReport:
        job.stop(reason)
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_GRACE)
        report = job.report
        report.duration = time.monotonic() - job.started
        report.aborted = True
        report.abort_reason = reason
        return report
