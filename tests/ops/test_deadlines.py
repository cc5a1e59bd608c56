"""AISETL_OBJ_TIMEOUT: 504 when an object's deadline passes, async transforms cancelled, no late
direct put, an uninterruptible transform reported and its result dropped; a target that hangs
up ends the work the same way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aisetl.target import ETL, Cluster, TransformResult

from ..servers.conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, payload, serve_argv
from .conftest import objects, settled, value, wait_for

DEADLINE = "0.5"
MESSAGE = "Deadline of 0.5 s (AISETL_OBJ_TIMEOUT) passed while"


def comms(framework: str) -> tuple[str, ...]:
    return ("hpush", "hpull", "ws") if framework == "fastapi" else ("hpush", "hpull")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two targets (destinations on the other one) that wait 30 s for an answer."""
    with Cluster(
        tmp_path_factory.mktemp("deadlines"), targets=2, placement="remote", time_scale=0.01
    ) as c:
        c.bucket("dst")
        yield c


def launch(
    cluster: Cluster, name: str, spec: str, framework: str, obj_timeout: float = 30, **env: str
) -> ETL:
    return cluster.launch(
        name,
        serve_argv(f"tests.ops.transformers:{spec}", framework),
        comm="ws" if framework == "fastapi" else "hpush",
        env={**TEST_ENV, "AISETL_OBJ_TIMEOUT": DEADLINE, **env},
        cwd=str(REPO),
        init_timeout=60,
        obj_timeout=obj_timeout,
    )


def problem(result: TransformResult) -> str:
    """The server's message, over HTTP (an error) or ws (a text reply a target takes as done)."""
    return result.error.msg if result.error is not None else str(result.text)


def finished_late(etl: ETL, name: str) -> bool:
    return any(
        "abandoned transform" in line and name in line and "was dropped" in line
        for line in etl.logs().splitlines()
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_slow_sync_transform_is_answered_504_and_its_result_dropped(
    cluster: Cluster, framework: str
) -> None:
    etl = launch(cluster, f"{framework}-late-sync", "Steered", framework)
    target = cluster.targets[0]
    bucket = target.bucket(f"late-{framework}")
    names = []
    for comm in comms(framework):
        name = f"slow-{comm}.bin"
        bucket.put(name, b"abc")
        result = target.transform(etl, bucket, name, comm=comm, etl_args="sleep=2")
        assert MESSAGE + " running the transform" in problem(result), result
        if comm != "ws":
            assert result.status == 504
        assert not finished_late(etl, name)  # answered while the transform still ran
        names.append(name)
        assert health_ok(etl)
        # it runs on, holding its transform slot, and its result goes nowhere
        wait_for(lambda name=name: finished_late(etl, name), 15, f"{name} to finish")
        bucket.put("quick", b"quick")
        assert target.transform(etl, bucket, "quick", comm=comm).content == b"QUICK"
    samples = settled(etl)
    assert value(samples, "aisetl_transform_overruns_total") == len(names)
    found = objects(samples)
    assert sum(v for (c, o, s), v in found.items() if o == "timeout" and s == "504") == len(names)
    log = etl.logs()
    assert log.count("Python cannot interrupt it): its result will be dropped") == len(
        [c for c in comms(framework) if c != "ws"]  # ws failures are logged by the ws rules
    )


@pytest.mark.parametrize("spec", ["AsyncSleeper", "AsyncSleeperStream"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_async_transform_is_cancelled(cluster: Cluster, framework: str, spec: str) -> None:
    etl = launch(cluster, f"{framework}-late-{spec.lower()}", spec, framework)
    target = cluster.targets[0]
    bucket = target.bucket(f"async-{framework}")
    for comm in comms(framework):
        name = f"{spec}-{comm}.bin"
        bucket.put(name, b"abc")
        result = target.transform(etl, bucket, name, comm=comm, etl_args="3")
        assert MESSAGE in problem(result), result
        wait_for(
            lambda name=name: f"{name} was cancelled" in etl.logs(),
            10,
            "the cancellation",
        )
        quick = target.transform(etl, bucket, name, comm=comm, etl_args="0")
        assert quick.content == b"ABC", quick
    if spec == "AsyncSleeper":  # only the quick ones ran to their end
        assert etl.logs().count("ran to its end") == len(comms(framework))
    samples = settled(etl)
    assert value(samples, "aisetl_transform_overruns_total") == 0  # cancelled, not abandoned
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_no_direct_put_after_the_deadline(cluster: Cluster, framework: str) -> None:
    etl = launch(cluster, f"{framework}-late-put", "Steered", framework)
    target = cluster.targets[0]
    bucket = target.bucket(f"put-{framework}")
    for comm in comms(framework):
        name = f"late-{framework}-{comm}.bin"
        bucket.put(name, payload(1000))
        result = target.transform(etl, bucket, name, comm=comm, etl_args="sleep=1.5",
                                  dst=("dst", name))  # fmt: skip
        assert MESSAGE in problem(result), result
        wait_for(lambda name=name: finished_late(etl, name), 15, "the transform to end")
        assert not any(p.object.name == name for t in cluster.targets for p in t.puts)
        # in time, the same object is delivered
        result = target.transform(etl, bucket, name, comm=comm, dst=("dst", name))
        assert result.delivered, result
        assert cluster.get("dst", name) == payload(1000).upper()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_slow_stream_is_cut_at_the_deadline(cluster: Cluster, framework: str) -> None:
    etl = launch(cluster, f"{framework}-late-stream", "SteeredStream", framework)
    target = cluster.targets[0]
    bucket = target.bucket(f"stream-{framework}")
    bucket.put("five-chunks", payload(5 * 64 * 1024))
    for comm in ("hpush", "hpull"):
        # the first chunk after the deadline: a 504 answer
        result = target.transform(etl, bucket, "five-chunks", comm=comm, etl_args="slow=0.8")
        assert result.status == 504 and MESSAGE in problem(result), result
        # chunks in time, then one too late: the reply is cut, the target sees a read error
        result = target.transform(etl, bucket, "five-chunks", comm=comm, etl_args="slow=0.2")
        assert result.error is not None and result.content is None, result
    samples = settled(etl)
    timed_out = sum(v for (c, o, s), v in objects(samples).items() if o == "timeout")
    assert timed_out == 4
    assert health_ok(etl)


@pytest.mark.parametrize("spec", ["Steered", "AsyncSleeper"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_target_that_hangs_up_ends_the_work(cluster: Cluster, framework: str, spec: str) -> None:
    """The target gives up after 1 s (its obj_timeout); the server's own deadline is far."""
    etl = launch(cluster, f"{framework}-hangup-{spec.lower()}", spec, framework, obj_timeout=1,
                 AISETL_OBJ_TIMEOUT="60")  # fmt: skip
    target = cluster.targets[0]
    bucket = target.bucket(f"hangup-{framework}-{spec.lower()}")
    bucket.put("o", b"abc")
    args = "sleep=3" if spec == "Steered" else "3"
    for count, comm in enumerate(("hpush", "hpull"), 1):
        result = target.transform(etl, bucket, "o", comm=comm, etl_args=args)
        assert result.error is not None and result.content is None, result
        wait_for(
            lambda count=count: etl.logs().count("the target hung up") >= count,
            10,
            "the server to notice the hang-up",
        )
        if spec == "Steered":  # noticed while the transform still ran; its result dropped
            assert etl.logs().count("abandoned transform") == count - 1
            wait_for(
                lambda count=count: etl.logs().count("abandoned transform") == count,
                10,
                "the abandoned transform to end",
            )
        else:
            wait_for(
                lambda count=count: etl.logs().count("was cancelled") == count,
                10,
                "the cancellation",
            )
    samples = settled(etl)
    assert sum(v for (c, o, s), v in objects(samples).items() if o == "gone") == 2
    assert value(samples, "aisetl_transform_overruns_total") == (2 if spec == "Steered" else 0)
    assert health_ok(etl)
