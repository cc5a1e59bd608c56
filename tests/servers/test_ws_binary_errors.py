"""AISETL_WS_ERRORS=binary: a failed task whose result belongs to another target is an error
the target records, as a Go target's ws read loop does for a binary reply to a task without a
local writer; every other failed task keeps the text answer (and its known cost)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aisetl.target import Cluster

from ..transformers import upper
from .conftest import REPO, TEST_ENV, health_ok, serve_argv

NAMES = ["good-1", "bad-1", "good-2", "bad-2", "good-3"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(
        tmp_path_factory.mktemp("binary"), targets=2, placement="remote", time_scale=0.01,
        ws_timeout=20,
    ) as c:  # fmt: skip
        for spec in ("FailNamed", "Upper"):
            c.launch(
                f"binary-{spec.lower()}", serve_argv(f"tests.transformers:{spec}", "fastapi"),
                comm="ws", env={**TEST_ENV, "AISETL_WS_ERRORS": "binary"}, cwd=str(REPO),
                init_timeout=60, per_target=False,
            )  # fmt: skip
        yield c


def fill(cluster: Cluster, bucket: str) -> None:
    cluster.bucket(bucket)
    for name in NAMES:
        cluster.put(bucket, name, name.encode() * 100)


def test_failed_tasks_for_another_target_are_recorded_errors(cluster: Cluster) -> None:
    fill(cluster, "bin-src")
    report = cluster.run_job(
        "binary-failnamed", "bin-src", "bin-dst", comm="ws", continue_on_error=True
    )
    assert report.lost == 0 and report.failed == 2 and report.delivered == 3, report
    failed = sorted(error.obj_name for error in report.errors)
    assert failed == ["ais://bin-src/bad-1", "ais://bin-src/bad-2"]
    for error in report.errors:
        assert error.msg.startswith("task.w is nil, expected direct put but got result from")
    for name in NAMES:
        if name.startswith("good"):
            assert cluster.get("bin-dst", name) == upper(name.encode() * 100)
    etl = cluster.etl("binary-failnamed")
    assert health_ok(etl)
    assert "answering with an empty binary message (AISETL_WS_ERRORS=binary)" in etl.logs()


def test_the_first_recorded_error_aborts_a_job_without_continue_on_error(
    cluster: Cluster,
) -> None:
    fill(cluster, "bin-abort")
    report = cluster.run_job("binary-failnamed", "bin-abort", "bin-abort-out", comm="ws")
    assert report.aborted and "task.w is nil" in report.abort_reason, report
    assert report.lost == 0


def test_a_failing_destination_is_an_error_not_a_loss(cluster: Cluster) -> None:
    """The hop fails after the server's retries: before, 20 of 20 objects were lost."""
    cluster.bucket("hop-src")
    for index in range(20):
        cluster.put("hop-src", f"o{index}", b"x" * 1000)
    for target in cluster.targets:
        target.faults.respond(500, "disk says no", count=1000, method="PUT", path="hop-dst")
    try:
        report = cluster.run_job(
            "binary-upper", "hop-src", "hop-dst", comm="ws", continue_on_error=True
        )
    finally:
        for target in cluster.targets:
            target.faults.clear()
    assert report.failed == 20 and report.lost == 0 and report.delivered == 0, report
    assert all("task.w is nil" in error.msg for error in report.errors)


def test_a_result_this_target_keeps_still_gets_the_text(cluster: Cluster) -> None:
    """A local writer would store an empty binary reply as the object: the text is sent."""
    cluster.placement = "local"
    try:
        fill(cluster, "bin-local")
        report = cluster.run_job(
            "binary-failnamed", "bin-local", "bin-local-out", comm="ws", continue_on_error=True
        )
    finally:
        cluster.placement = "remote"
    assert report.lost == 2 and report.stored == 3, report
    out = cluster.bucket("bin-local-out")
    assert not any(bucket.exists("bad-1") for bucket in out)
