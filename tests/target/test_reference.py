"""The emulated cluster driving the reference SDK servers (aistore 2.0.0) end to end.

Two targets, one server per target and ETL, like a real cluster. Skipped when the reference
interpreter is not available (see ``conftest.reference_python``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from aisetl.target import Cluster

NAMES = ["a.txt", "dir/cat 1.jpg", "dir/ü & v.txt", "x,y;z=1+2@3.txt"]

#: (ETL name, reference framework, comm type)
ETLS = [
    ("fastapi-push", "fastapi", "hpush"),
    ("fastapi-ws", "fastapi", "ws"),
    ("flask-pull", "flask", "hpull"),
    ("flask-push", "flask", "hpush"),
    ("threaded-push", "http", "hpush"),
    ("threaded-pull", "http", "hpull"),
]


@pytest.fixture(scope="module")
def cluster(ref_argv: Callable[[str], list[str]]) -> Iterator[Cluster]:
    with Cluster(targets=2, placement="remote", time_scale=0.01, obj_timeout=20) as cluster:
        t0 = cluster.targets[0]
        for name in NAMES:
            t0.bucket("src").put(name, f"data of {name}".encode())
        cluster.bucket("dst")
        for etl_name, kind, comm in ETLS:
            cluster.launch(etl_name, ref_argv(kind), comm=comm, init_timeout=30)
        for kind in ("fastapi-stream", "flask-stream"):
            cluster.launch(kind, ref_argv(kind), per_target=False, init_timeout=30)
        yield cluster


def upper(name: str) -> bytes:
    return f"data of {name}".encode().upper()


@pytest.mark.parametrize(("etl_name", "kind", "comm"), ETLS)
@pytest.mark.parametrize("fqn", [True, False], ids=["fqn", "body"])
def test_inline_every_comm_type(
    cluster: Cluster, etl_name: str, kind: str, comm: str, fqn: bool
) -> None:
    t0 = cluster.targets[0]
    for name in NAMES:
        result = t0.transform(etl_name, "src", name, fqn=fqn)
        assert result.ok, (name, result.error)
        assert result.content == upper(name)
        if comm != "ws":
            assert result.status == 200


def test_hpull_body_mode_reads_through_the_endpoint(cluster: Cluster) -> None:
    t0 = cluster.targets[0]
    etl = cluster.etl("flask-pull")
    cluster.clear_records()
    assert t0.hpull(etl, "src", "dir/ü & v.txt", fqn=False).ok
    (get,) = [r for r in cluster.records("endpoint") if r.method == "GET"]
    assert get.uri == (
        f"/v1/etl/_object/flask-pull/{etl.secret}/ais%2F@%23%2Fsrc%2Fdir%2F%C3%BC%20%26%20v.txt"
    )
    assert get.status == 200 and get.target == "t0"


def test_etl_args_reach_the_transform(cluster: Cluster) -> None:
    result = cluster.targets[0].hpush("fastapi-push", "src", "a.txt", etl_args="!x")
    assert result.content == upper("a.txt") + b"!x"


@pytest.mark.parametrize("etl_name", ["fastapi-push", "flask-pull", "threaded-push"])
def test_direct_put_to_remote_target(cluster: Cluster, etl_name: str) -> None:
    t0, t1 = cluster.targets
    dst = f"copy-{etl_name}.txt"
    result = t0.copy(etl_name, "src", "dir/cat 1.jpg", ("dst", dst))
    assert result.ok and result.delivered and result.status == 204
    assert t1.bucket("dst").get(dst) == upper("dir/cat 1.jpg")
    assert not t0.bucket("dst").exists(dst)
    assert t1.puts[-1].object.name == dst and t1.puts[-1].uuid == ""


@pytest.mark.parametrize("first", ["fastapi-push", "fastapi-ws"])
def test_pipeline_of_two_etls_with_args(cluster: Cluster, first: str) -> None:
    """TV-51: inline, through an ETL stage; etl_args reach every stage."""
    t0 = cluster.targets[0]
    result = t0.transform(first, "src", "a.txt", etl_args="!", pipeline=["flask-push"])
    assert result.ok and result.content == upper("a.txt") + b"!!"


@pytest.mark.parametrize("first", ["fastapi-push", "fastapi-ws", "flask-pull"])
def test_pipeline_then_remote_destination(cluster: Cluster, first: str) -> None:
    t0, t1 = cluster.targets
    dst = f"piped-{first}.txt"
    result = t0.transform(first, "src", "a.txt", pipeline=["flask-push"], dst=("dst", dst))
    assert result.ok and result.delivered
    assert t1.bucket("dst").get(dst) == upper("a.txt")


@pytest.mark.parametrize("etl_name", ["fastapi-push", "fastapi-ws", "flask-pull", "threaded-push"])
def test_job_over_two_targets(cluster: Cluster, etl_name: str) -> None:
    dst = f"job-{etl_name}"
    cluster.placement = "hash"
    try:
        report = cluster.run_job(etl_name, "src", dst, ext={"txt": "out"}, prefix="")
    finally:
        cluster.placement = "remote"
    assert report.ok, report.errors
    assert report.total == len(NAMES) and report.stored + report.delivered == len(NAMES)
    for name in NAMES:
        renamed = name[: -len("txt")] + "out" if name.endswith(".txt") else name
        assert cluster.get(dst, renamed) == upper(name)
    if report.delivered:
        assert report.bytes_out >= sum(len(upper(n)) for n in NAMES) - 100


def test_inline_get_follows_the_redirect(cluster: Cluster) -> None:
    got = cluster.targets[0].get("src", "dir/cat 1.jpg", etl="flask-pull", etl_args="?")
    assert (got.status, got.body) == (200, upper("dir/cat 1.jpg") + b"?")
    redirect = cluster.targets[0].get("src", "a.txt", etl="flask-pull", follow_redirects=False)
    assert redirect.status == 307


def test_tv45_503_contract_end_to_end(cluster: Cluster) -> None:
    """A streaming server fed by a PUT body cannot retry a failed direct put itself: it
    answers 503 + retry reason and the target replays the whole PUT."""
    t0, t1 = cluster.targets
    t1.faults.reset(method="PUT", path="replayed.txt")
    result = t0.copy("fastapi-stream", "src", "dir/cat 1.jpg", ("dst", "replayed.txt"), fqn=False)
    assert result.ok and result.delivered and result.attempts == 2
    assert t1.bucket("dst").get("replayed.txt") == upper("dir/cat 1.jpg")
    driver = [r for r in cluster.records("driver") if r.uri.startswith("/src/dir/cat")]
    first, second = driver[-2:]
    assert (first.status, second.status) == (503, 204)
    assert first.response_headers and ("ais-etl-retry-reason", "direct-put-transient") in [
        (name.lower(), value) for name, value in first.response_headers
    ]


def test_flask_streaming_direct_put_replays_a_consumed_body(cluster: Cluster) -> None:
    """Reference defect: after a reset mid-body, the Flask server's HTTP session retries the
    streaming PUT on its own with the generator partly consumed; the target stores a
    truncated object and the server reports success (204)."""
    t0, t1 = cluster.targets
    whole = bytes(range(97, 123)) * 10_000  # 260 kB: more than a socket buffer
    t0.bucket("big").put("big.bin", whole)
    t1.faults.reset(method="PUT", path="truncated.bin", mid_body=True)
    result = t0.copy("flask-stream", "big", "big.bin", ("dst", "truncated.bin"), fqn=False)
    assert result.ok and result.delivered and result.attempts == 1
    stored = t1.bucket("dst").get("truncated.bin")
    assert len(stored) < len(whole) and whole.upper().endswith(stored)


def test_tv53_failures_over_http_and_ws(cluster: Cluster) -> None:
    t0 = cluster.targets[0]
    http = t0.hpush("fastapi-push", "src", "a.txt", etl_args="raise")
    assert http.error is not None and http.error.ecode == 500
    assert http.error.msg.startswith("ETL error: ") and "asked to fail" in http.error.msg
    ws = t0.ws("fastapi-ws", "src", "a.txt", etl_args="raise")
    # A text reply: the target records no error (ok), and the emulator reports the loss.
    assert ws.ok and not ws.delivered and ws.lost is not None and "asked to fail" in ws.lost
    assert t0.ws("fastapi-ws", "src", "a.txt").content == upper("a.txt")  # still usable
