"""GET /metrics in every server: exact counts across two workers, by comm type and outcome."""

from __future__ import annotations

import collections
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from aisetl.target import Cluster, TransformResult, free_port

from ..servers.conftest import FRAMEWORKS, REPO, TEST_ENV, payload, serve_argv
from .conftest import get, objects, scrape, settled, value

PID = "tests.ops.transformers:Pid"
#: etl_args -> (outcome, status) of an object sent with it
KINDS = {"": ("ok", "200"), "reject": ("failed", "415"), "fail": ("failed", "500")}
PER_KIND = {"": 3, "reject": 2, "fail": 1}


def comms(framework: str) -> tuple[str, ...]:
    return ("hpush", "hpull", "ws") if framework == "fastapi" else ("hpush", "hpull")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two targets (destinations live on the other one); 2-worker servers."""
    with Cluster(
        tmp_path_factory.mktemp("metrics"), targets=2, placement="remote", time_scale=0.01
    ) as c:
        c.bucket("dst")
        yield c


def launch(cluster: Cluster, name: str, framework: str, workers: int = 2, **env: str) -> str:
    cluster.launch(
        name,
        [*serve_argv(PID, framework), "--workers", str(workers)],
        comm="ws" if framework == "fastapi" else "hpush",
        env={**TEST_ENV, **env},
        cwd=str(REPO),
        init_timeout=60,
        per_target=False,
    )
    return name


def reach_both_workers(url: str) -> tuple[int, int]:
    """PUT objects 8 at a time, each on a new connection, until both workers served some.

    (A target keeps its connections alive, so its objects may all go to one worker.) Returns
    how many objects were sent (each one byte, answered 200) and their bytes out.
    """
    pids: set[bytes] = set()
    sent = out = 0
    lock = threading.Lock()

    def one() -> None:
        nonlocal sent, out
        request = urllib.request.Request(url + "/warm/up", data=b"w", method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = response.read()
        with lock:
            sent += 1
            out += len(answer)
            pids.add(answer)

    for _ in range(50):  # bounded: 400 objects at most
        threads = [threading.Thread(target=one) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        if len(pids) >= 2:
            return sent, out
    raise AssertionError(f"only one worker answered {sent} objects: {pids}")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_counts_are_exact_across_two_workers(cluster: Cluster, framework: str) -> None:
    etl = launch(cluster, f"{framework}-counted", framework)
    target = cluster.targets[0]
    bucket = target.bucket(f"counted-{framework}")
    expected: collections.Counter[tuple[str, str, str]] = collections.Counter()
    warm, bytes_out = reach_both_workers(cluster.etl(etl).url())
    expected["hpush", "ok", "200"] += warm
    bytes_in = warm  # the warm-up object is one byte
    results: list[TransformResult] = []
    for comm in comms(framework):
        for fqn in (False, True):
            for args, count in PER_KIND.items():
                for i in range(count):
                    data = payload(1000 + i, seed=len(results))
                    name = f"{comm}/{fqn}/{args or 'ok'}-{i}"
                    bucket.put(name, data)
                    result = target.transform(etl, bucket, name, comm=comm, fqn=fqn, etl_args=args)
                    outcome, status = KINDS[args]
                    if args and comm == "ws":  # a text reply: lost, as far as a target knows
                        assert result.lost is not None, result
                    elif args:
                        assert result.error is not None and result.error.ecode == int(status)
                    else:
                        assert result.content is not None, result
                        bytes_out += len(result.content)
                    expected[comm, outcome, status] += 1
                    bytes_in += len(data)
                    results.append(result)
        # delivered by direct put to the destination target
        name = f"{comm}/delivered"
        data = payload(3000)
        bucket.put(name, data)
        result = target.transform(etl, bucket, name, comm=comm, dst=("dst", name))
        assert result.delivered and result.error is None, result
        expected[comm, "delivered", "204"] += 1
        bytes_in += len(data)
        bytes_out += len(cluster.get("dst", name))
    total = sum(expected.values())
    for _ in range(6):  # any worker may answer a scrape: each gives the pod's totals
        samples = settled(cluster.etl(etl))
        assert objects(samples) == dict(expected)
        assert value(samples, "aisetl_input_bytes_total") == bytes_in
        assert value(samples, "aisetl_output_bytes_total") == bytes_out
        assert value(samples, "aisetl_request_duration_seconds_count") == total
        assert value(samples, "aisetl_transform_duration_seconds_count") == total
        assert value(samples, "aisetl_objects_in_flight") == 0
        assert value(samples, "aisetl_direct_put_attempts_total", hop="target") == len(
            comms(framework)
        )
        assert value(samples, "aisetl_direct_put_failures_total") == 0
        ws_failures = PER_KIND["reject"] * 2 + PER_KIND["fail"] * 2 if framework == "fastapi" else 0
        assert value(samples, "aisetl_unreported_failures_total", comm="ws") == ws_failures
        pids = {dict(ls)["pid"] for (n, ls) in samples if n == "process_resident_memory_bytes"}
        assert len(pids) == 3, pids  # the supervisor and two workers
        for name in ("process_cpu_seconds_total", "process_open_fds", "process_max_fds"):
            assert value(samples, name) > 0, name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_direct_put_retries_and_failures_by_hop_kind(cluster: Cluster, framework: str) -> None:
    etl = launch(cluster, f"{framework}-hops", framework, workers=1)
    dead = cluster.attach(f"dead-{framework}", f"http://127.0.0.1:{free_port()}")
    target = cluster.targets[0]
    bucket = target.bucket(f"hops-{framework}")
    bucket.put("x", b"abc")
    result = target.transform(etl, bucket, "x", comm="hpush", pipeline=[dead])
    assert result.error is not None and result.error.ecode == 502, result
    samples = settled(cluster.etl(etl))
    assert value(samples, "aisetl_direct_put_attempts_total", hop="etl") == 4  # 1 + 3 retries
    assert value(samples, "aisetl_direct_put_retries_total", hop="etl") == 3
    assert value(samples, "aisetl_direct_put_failures_total", hop="etl") == 1
    assert objects(samples) == {("hpush", "failed", "502"): 1}
    # one worker: prometheus_client's own process metrics; gunicorn always forks its worker
    # from an arbiter, whose pod has two processes (labelled by pid)
    assert value(samples, "process_resident_memory_bytes") > 0
    pids = {dict(ls).get("pid") for (n, ls) in samples if n == "process_resident_memory_bytes"}
    assert len(pids) == (2 if framework == "flask" else 1)
    assert (None in pids) == (framework != "flask")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_metrics_is_never_an_object_and_can_be_turned_off(cluster: Cluster, framework: str) -> None:
    on = cluster.etl(launch(cluster, f"{framework}-scraped", framework, workers=1))
    off = cluster.etl(launch(cluster, f"{framework}-dark", framework, 1, AISETL_METRICS="false"))
    for _ in range(3):
        assert get(on.url() + "/metrics")[0] == 200
    status, text = get(on.url() + "/metrics", "HEAD")
    assert (status, text) == (200, "")
    samples = scrape(on)
    assert objects(samples) == {}  # scrapes are not objects
    assert value(samples, "aisetl_objects_in_flight") == 0  # our metrics exist before objects
    status, text = get(off.url() + "/metrics")
    assert status == 404
    assert "Metrics are off (AISETL_METRICS=false)" in text
    assert get(off.url() + "/health") == (200, "Running")
    # the server still works, and an object named "metrics" is an object (a pipeline stage
    # receives PUT /metrics for a ws-driven object of that name)
    target = cluster.targets[0]
    bucket = target.bucket(f"dark-{framework}")
    bucket.put("o", b"abc")
    assert target.hpush(off, bucket, "o").content is not None
    request = urllib.request.Request(on.url() + "/metrics", data=b"abc", method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and response.read().isdigit()  # the Pid transform
    assert objects(settled(on)) == {("hpush", "ok", "200"): 1}
