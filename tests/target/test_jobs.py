"""Offline bucket-to-bucket jobs: naming, resume, errors, aborts, placement, progress."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from aisetl.protocol import parse_query, sanitize_fqn, split_target
from aisetl.target import Cluster, EmulatedTarget, JobProgress, rename_with

from .rawserver import RawRequest, RawServer, Script, response

MakeServer = Callable[[Script], RawServer]


def fake_etl(request: RawRequest, conn: socket.socket, n: int) -> bytes:
    """Upper-cases FQN or body; object names with "fail" -> 500, "missing" -> 404."""
    path, query = split_target(request.uri)
    fqn = parse_query(query).get("etl_fqn")
    if "fail" in path:
        return response(500, b"boom")
    if "missing" in path:
        return response(404, b"nope")
    if fqn:
        with open(sanitize_fqn(fqn), "rb") as file:
            return response(200, file.read().upper())
    return response(200, request.body.upper())


def test_folder_to_folder_with_ext_mapping(tmp_path: Path, raw_server: MakeServer) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    out.mkdir()
    (src / "a.flac").write_bytes(b"aaa")
    (src / "sub" / "b.flac").write_bytes(b"bb")
    (src / "c.txt").write_bytes(b"c")
    server = raw_server(fake_etl)
    seen: list[JobProgress] = []
    with EmulatedTarget(tmp_path / "cluster") as tgt:
        tgt.attach_bucket("src", src)
        tgt.attach_bucket("out", out)
        tgt.attach("fake-etl", server.url)
        report = tgt.run_job("fake-etl", "src", "out", ext={"flac": "wav"}, progress=seen.append)
    assert report.ok and (report.total, report.stored) == (3, 3)
    assert (report.bytes_in, report.bytes_out) == (6, 6)
    assert (out / "a.wav").read_bytes() == b"AAA"
    assert (out / "sub" / "b.wav").read_bytes() == b"BB"
    assert (out / "c.txt").read_bytes() == b"C"
    assert seen and seen[-1].done == 3 and seen[-1].total == 3
    fqns = sorted(parse_query(split_target(r.uri)[1])["etl_fqn"] for r in server.requests)
    assert sanitize_fqn(fqns[0]) == str(src / "a.flac")


def test_prefix_and_rename(raw_server: MakeServer) -> None:
    server = raw_server(fake_etl)
    with EmulatedTarget() as tgt:
        for name in ["img/1", "img/2", "txt/3"]:
            tgt.bucket("src").put(name, name.encode())
        tgt.attach("fake-etl", server.url)
        report = tgt.run_job("fake-etl", "src", "dst", prefix="img/", prepend="out-", fqn=False)
        assert report.ok and report.total == 2
        assert tgt.bucket("dst").list() == ["out-img/1", "out-img/2"]
    assert rename_with({"jpg": ".png"})("a.b.jpg") == "a.b.png"
    assert rename_with({"jpg": "png"})("noext") == "noext"


def populate(tgt: EmulatedTarget, names: list[str]) -> None:
    for name in names:
        tgt.bucket("src").put(name, b"x")


def test_first_error_aborts(raw_server: MakeServer) -> None:
    server = raw_server(fake_etl)
    with EmulatedTarget() as tgt:
        populate(tgt, [f"o{i:02}" for i in range(10)] + ["o05-fail"])
        tgt.attach("fake-etl", server.url)
        report = tgt.run_job("fake-etl", "src", "dst", workers=1)
    assert report.aborted and report.abort_reason == "ETL error: boom"
    assert report.failed == 1 and report.stored == 6 and not report.ok
    assert [e.as_dict() for e in report.errors] == [
        {"obj_name": "ais://src/o05-fail", "msg": "ETL error: boom", "ecode": 500}
    ]


def test_continue_on_error_and_not_found(raw_server: MakeServer) -> None:
    server = raw_server(fake_etl)
    with EmulatedTarget() as tgt:
        populate(tgt, ["a", "b-fail", "c-missing", "d"])
        tgt.attach("fake-etl", server.url)
        strict = tgt.run_job("fake-etl", "src", "dst", workers=1, prefix="c")
        assert not strict.aborted and strict.not_found == 1  # 404 never aborts
        report = tgt.run_job("fake-etl", "src", "dst2", continue_on_error=True, workers=2)
    assert not report.aborted and (report.stored, report.failed, report.not_found) == (2, 2, 1)
    assert {e.msg for e in report.errors} == {"ETL error: boom", "object not found"}


def test_skip_existing_resumes(raw_server: MakeServer) -> None:
    server = raw_server(fake_etl)
    with EmulatedTarget() as tgt:
        populate(tgt, [f"o{i}" for i in range(6)])
        for i in range(4):
            tgt.bucket("dst").put(f"o{i}", b"done before")
        tgt.attach("fake-etl", server.url)
        report = tgt.run_job("fake-etl", "src", "dst", skip_existing=True)
        assert (report.skipped, report.stored) == (4, 2) and report.done == 6
        assert tgt.bucket("dst").get("o0") == b"done before"
    assert len(server.requests) == 2


def test_target_stores_returned_bytes_at_remote_owner(raw_server: MakeServer) -> None:
    """A server that ignores the destination hop still works: the target forwards the bytes."""
    server = raw_server(fake_etl)
    with Cluster(targets=2, placement="remote") as cluster:
        t0, t1 = cluster.targets
        t0.bucket("src").put("a", b"aa")
        t1.bucket("src").put("b", b"bb")
        cluster.attach("fake-etl", server.url)
        report = cluster.run_job("fake-etl", "src", "dst")
        assert report.ok and report.stored == 2
        assert t1.bucket("dst").get("a") == b"AA" and t0.bucket("dst").get("b") == b"BB"
        assert not t0.bucket("dst").exists("a")
    hops = [r.head.split(b"Ais-Node-Url: ")[1].split(b"\r\n")[0] for r in server.requests]
    assert sorted(hops) == sorted(
        [
            f"{t1.url}/ais%2F@%23%2Fdst%2Fa?owt=3&uuid={report.job_id}".encode(),
            f"{t0.url}/ais%2F@%23%2Fdst%2Fb?owt=3&uuid={report.job_id}".encode(),
        ]
    )


def test_unreachable_server_fails_the_job(closed_port: int) -> None:
    with EmulatedTarget(time_scale=0.0001) as tgt:
        populate(tgt, ["a", "b"])
        tgt.attach("dead-etl", f"http://127.0.0.1:{closed_port}")
        report = tgt.run_job("dead-etl", "src", "dst", workers=1)
    assert report.aborted and report.failed == 1
    assert "connection refused" in report.errors[0].msg


def test_empty_source(raw_server: MakeServer) -> None:
    with EmulatedTarget() as tgt:
        tgt.bucket("src")
        tgt.attach("fake-etl", raw_server(fake_etl).url)
        report = tgt.run_job("fake-etl", "src", "dst")
    assert report.ok and report.total == 0 and report.done == 0


@pytest.mark.parametrize("comm", ["hpush", "hpull"])
def test_job_comm_override(raw_server: MakeServer, comm: str) -> None:
    server = raw_server(fake_etl)
    with EmulatedTarget() as tgt:
        populate(tgt, ["a"])
        tgt.attach("fake-etl", server.url)
        assert tgt.run_job("fake-etl", "src", "dst", comm=comm).ok
    assert server.requests[0].method == ("PUT" if comm == "hpush" else "GET")


def test_broken_progress_callback_aborts_cleanly(raw_server: MakeServer) -> None:
    def broken(progress: JobProgress) -> None:
        raise RuntimeError("display gone")

    with EmulatedTarget() as tgt:
        populate(tgt, ["a", "b"])
        tgt.attach("fake-etl", raw_server(fake_etl).url)
        report = tgt.run_job("fake-etl", "src", "dst", progress=broken, workers=1)
    assert report.aborted and "display gone" in report.abort_reason


def test_async_cluster(raw_server: MakeServer) -> None:
    import asyncio

    from aisetl.target import AsyncCluster, JobSpec

    server = raw_server(fake_etl)

    async def main() -> tuple[bytes | None, int]:
        async with AsyncCluster() as cluster:
            target = cluster.targets[0]
            target.bucket("src").put("a", b"abc")
            etl = await cluster.attach("fake-etl", server.url)
            result = await target.transform(etl, "src", "a")
            report = await cluster.run_job(JobSpec(etl, "src", "dst"))
            return result.content, report.stored

    assert asyncio.run(main()) == (b"ABC", 1)
