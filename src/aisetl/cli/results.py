"""What an ``aisetl run`` found: --dst checked, errors grouped, the summary and the JSON report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aisetl.cli.failures import ErrorGroup
    from aisetl.cli.job import Outcome
    from aisetl.cli.run import RunPlan
    from aisetl.target import JobReport

#: Distinct errors listed in the summary (every failed object goes to --report).
SUMMARY_ERRORS = 10
#: Objects named per distinct error in the summary.
OBJECTS_PER_GROUP = 5


def _relative(obj_name: str, src_bucket: str) -> str:
    prefix = f"ais://{src_bucket}/"
    return obj_name[len(prefix) :] if obj_name.startswith(prefix) else obj_name


@dataclass
class RunResult:
    """What a run found: the job's outcome, its errors grouped, and where the logs were kept."""

    outcome: Outcome
    src_bucket: str
    groups: list[ErrorGroup] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def report(self) -> JobReport:
        """The job's report."""
        return self.outcome.report


def report_dict(plan: RunPlan, result: RunResult) -> dict[str, Any]:
    """The JSON report: settings, counts, every failed object with its reason, error groups."""
    report, src_bucket = result.report, result.src_bucket
    death = result.outcome.death
    return {
        "job_id": report.job_id,
        "servers": [stage.server for stage in plan.stages],
        "src": str(plan.src),
        "dst": str(plan.dst),
        "comm": plan.comm,
        "fqn": plan.fqn,
        "direct_put": plan.direct_put,
        "etl_args": plan.etl_args,
        "ok": report.ok,
        "total": report.total,
        "stored": report.stored,
        "delivered": report.delivered,
        "skipped": report.skipped,
        "failed": report.failed,
        "lost": report.lost,
        "bytes_in": report.bytes_in,
        "bytes_out": report.bytes_out,
        "duration_s": round(report.duration, 3),
        "aborted": report.aborted,
        "abort_reason": report.abort_reason,
        "interrupted": result.outcome.interrupted,
        "server_died": death.message() if death else None,
        "errors": [
            {
                "object": _relative(error.obj_name, src_bucket),
                "status": error.ecode,
                "reason": error.msg,
            }
            for error in report.errors
        ],
        "error_groups": [
            {"reason": g.reason, "count": g.count, "objects": g.objects, "traceback": g.traceback}
            for g in result.groups
        ],
        "ws_errors": list(report.ws_errors),
        "logs": {name: str(path) for name, path in result.logs.items()},
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically, with the umask's permissions."""
    from aisetl.target.store import write_atomic

    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in text.splitlines()]


def summary(plan: RunPlan, result: RunResult) -> str:
    """The lines printed when the job ends."""
    from aisetl.cli.progress import human_bytes, human_seconds

    report = result.report
    rate = report.done / report.duration if report.duration > 0 else 0.0
    head = "done" if report.ok else "FAILED"
    lines = [
        f"{head}: {report.done}/{report.total} objects in {human_seconds(report.duration)} "
        f"({rate:.1f} obj/s): {report.stored + report.delivered} written"
        + (f" ({report.delivered} by direct put)" if report.delivered else "")
        + f", {report.skipped} skipped, {report.failed} failed; "
        f"{human_bytes(report.bytes_in)} in, {human_bytes(report.bytes_out)} out -> {plan.dst}"
    ]
    if report.aborted and report.abort_reason:
        lines.append(f"job stopped: {report.abort_reason}")
    death = result.outcome.death
    if death is not None and death.message() != report.abort_reason:
        lines.append(death.message())
    groups = result.groups
    if groups:
        distinct = f"{len(groups)} distinct error{'s' if len(groups) != 1 else ''}"
        lines.append(
            f"{report.failed} failed object{'s' if report.failed != 1 else ''}, {distinct}:"
        )
    for group in groups[:SUMMARY_ERRORS]:
        shown = ", ".join(group.objects[:OBJECTS_PER_GROUP])
        more = (
            f" and {group.count - OBJECTS_PER_GROUP} more"
            if group.count > OBJECTS_PER_GROUP
            else ""
        )
        if group.count == 1:
            lines.append(f"  {shown}: {group.example}")
        else:
            lines.append(f"  {group.count} x {group.reason}")
            lines.append(f"      {shown}{more}")
        if group.traceback:
            lines.append("      server traceback (last lines):")
            lines += _indent(group.traceback, "        ")
    if len(groups) > SUMMARY_ERRORS:
        where = f"see {plan.report}" if plan.report else "use --report FILE for the full list"
        lines.append(f"  ... and {len(groups) - SUMMARY_ERRORS} more distinct errors ({where})")
    if result.logs:
        lines.append("server logs: " + ", ".join(str(p) for p in result.logs.values()))
    elif not report.ok:
        lines.append("keep the servers' logs with --log DIR")
    return "\n".join(lines)


MSG_MISSING = (
    "no result at the destination: the server answered with a text message, which a target "
    "takes as delivered (ws has no error channel; {log})"
)


def finish(plan: RunPlan, result: RunResult, logs: list[str]) -> None:
    """Check --dst, name the limits timeouts hit, group the errors with their tracebacks."""
    from aisetl.cli.failures import attach_tracebacks, explain_timeout, group_errors
    from aisetl.target import ObjError

    report = result.report
    check_results(plan, report, result.src_bucket, result.logs)
    report.errors = [
        ObjError(e.obj_name, explain_timeout(e.msg, plan.obj_limit), e.ecode) for e in report.errors
    ]
    failures = []
    for error in report.errors:
        name = _relative(error.obj_name, result.src_bucket)
        failures.append((name, error.msg, (f"{result.src_bucket}/{name}", name)))
    result.groups = group_errors(failures)
    attach_tracebacks(result.groups, logs, result.src_bucket)


def check_results(
    plan: RunPlan, report: JobReport, src_bucket: str, logs: dict[str, Path] | None = None
) -> None:
    """Count objects the target took as delivered but whose result is not in --dst as failed.

    Over ws a server's failure reaches the target as a text message, which means "delivered
    by direct put" (PROTOCOL.md §7.4): the job cannot see it, the destination can.
    """
    from aisetl.target import Bucket, ObjError

    if report.aborted or report.delivered == 0:
        return
    failed = {_relative(error.obj_name, src_bucket) for error in report.errors}
    where = ", ".join(str(path) for path in (logs or {}).values())
    missing = MSG_MISSING.format(
        log=f"see {where}" if where else "the server log says why: keep it with --log DIR"
    )
    dst = Bucket("dst", plan.dst)
    for name in Bucket("src", plan.src).iter_names(plan.prefix):
        if name in failed or dst.exists(plan.rename(name)):
            continue
        report.errors.append(ObjError(f"ais://{src_bucket}/{name}", missing))
        report.failed += 1
        report.delivered -= 1
