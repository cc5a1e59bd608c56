"""The target's own endpoint: ETL object I/O (§6.4, TV-19), inline GET and redirect (TV-18),
and fault injection, over real sockets."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from aisetl.target import EmulatedTarget

from .rawserver import RawServer, Script, response


@pytest.fixture
def tgt() -> Iterator[EmulatedTarget]:
    with EmulatedTarget() as target:
        target.bucket("dst").put("a.txt", b"0123456789")
        target.bucket("images").put("dir/cat.jpg", b"meow")
        yield target


def call(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent exactly as given."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def register(tgt: EmulatedTarget, name: str = "md5-etl", url: str = "http://127.0.0.1:9") -> str:
    etl = tgt.attach(name, url)
    return urlsplit(etl.target_url()).path


@pytest.mark.parametrize("uname", ["ais%2F@%23%2Fdst%2Fa.txt", "ais/@%23/dst/a.txt"])
def test_tv19_get_both_forms(tgt: EmulatedTarget, uname: str) -> None:
    base = register(tgt)
    status, headers, body = call(tgt.url, "GET", f"{base}/{uname}")
    assert (status, body) == (200, b"0123456789")
    status, headers, body = call(tgt.url, "HEAD", f"{base}/{uname}")
    assert status == 200 and headers["content-length"] == "10" and body == b""


def test_tv19_errors(tgt: EmulatedTarget) -> None:
    base = register(tgt)
    prefix = base.rsplit("/", 1)[0]
    status, _, body = call(tgt.url, "GET", f"{base}/ais/@")  # what "ais/@#/dst/a.txt" sends
    assert status == 400
    status, headers, body = call(tgt.url, "GET", f"{prefix}/WRONGSECRT/ais%2F@%23%2Fdst%2Fa.txt")
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["message"] == "unrecognized request source"
    other = base.replace("/md5-etl/", "/no-such-etl/")
    assert call(tgt.url, "GET", f"{other}/ais%2F@%23%2Fdst%2Fa.txt")[0] == 404
    assert call(tgt.url, "GET", f"{base}/ais%2F@%23%2Fdst%2Fmissing")[0] == 404
    assert call(tgt.url, "GET", f"{base}/ais%2F@%23%2Fnobucket%2Fa")[0] == 404
    assert call(tgt.url, "DELETE", f"{base}/ais%2F@%23%2Fdst%2Fa.txt")[0] == 405
    assert call(tgt.url, "GET", f"{base}/ais%2F@%23%2Fdst%2F100%.txt")[0] == 400


def test_tv19_put(tgt: EmulatedTarget) -> None:
    base = register(tgt)
    status, headers, body = call(
        tgt.url, "PUT", f"{base}/ais%2F@%23%2Fdst%2Fnew%20name.txt?owt=3&uuid=XyZ123", b"HELLO"
    )
    assert (status, body, headers["content-length"]) == (200, b"", "0")
    assert tgt.bucket("dst").get("new name.txt") == b"HELLO"
    (put,) = tgt.puts
    assert (put.object.name, put.size, put.uuid, put.owt) == ("new name.txt", 5, "XyZ123", "3")


def test_chunked_put(tgt: EmulatedTarget) -> None:
    base = register(tgt)
    parts = urlsplit(tgt.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            f"PUT {base}/ais/@%23/dst/c.bin HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n".encode()
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK\r\n")
    assert tgt.bucket("dst").get("c.bin") == b"hello"


def test_range_get(tgt: EmulatedTarget) -> None:
    base = register(tgt)
    path = f"{base}/ais%2F@%23%2Fdst%2Fa.txt"
    status, headers, body = call(tgt.url, "GET", path, headers={"Range": "bytes=2-4"})
    assert (status, body, headers["content-range"]) == (206, b"234", "bytes 2-4/10")
    assert call(tgt.url, "GET", path, headers={"Range": "bytes=-3"})[2] == b"789"
    assert call(tgt.url, "GET", path, headers={"Range": "bytes=50-"})[0] == 416


def test_tv18_redirect(tgt: EmulatedTarget) -> None:
    etl = tgt.attach("md5-etl", "http://127.0.0.1:31245", comm="hpull")
    fqn = tgt.bucket("images").fqn("dir/cat.jpg")
    path = "/v1/objects/images/dir/cat.jpg?etl_name=md5-etl&etl_args=x"
    status, headers, _ = call(tgt.url, "GET", path)
    escaped = fqn.replace("%", "%25").replace("/", "%2F").replace("@", "%40")
    escaped = escaped.replace("%", "%25").replace("%2540", "%40")
    assert status == 307
    assert headers["location"] == (
        f"{etl.url()}/ais%2F@%23%2Fimages%2Fdir%2Fcat.jpg?etl_args=x&etl_fqn={escaped}"
    )
    status, headers, _ = call(
        tgt.url, "GET", "/v1/objects/images/dir/cat.jpg?etl_name=md5-etl&latest-ver=true"
    )
    assert headers["location"].endswith(f"etl_fqn={escaped}&latest-ver=true")
    tgt.attach("other-etl", "http://127.0.0.1:31246")
    pipeline = path + "&etl_pipeline=other-etl"
    assert call(tgt.url, "GET", pipeline)[0] == 400
    assert call(tgt.url, "GET", "/v1/objects/images/nope?etl_name=md5-etl")[0] == 404


def test_inline_get_through_hpush(
    tgt: EmulatedTarget, raw_server: Callable[[Script], RawServer]
) -> None:
    server = raw_server(lambda request, conn, n: response(200, b"MEOW"))
    tgt.attach("upper-etl", server.url)
    got = tgt.get("images", "dir/cat.jpg", etl="upper-etl", etl_args="a b")
    assert (got.status, got.body) == (200, b"MEOW")
    assert server.requests[0].uri.startswith("/images/dir/cat.jpg?etl_args=a+b&etl_fqn=")
    plain = tgt.get("images", "dir/cat.jpg")
    assert plain.body == b"meow"


def test_faults(tgt: EmulatedTarget) -> None:
    base = register(tgt)
    path = f"{base}/ais%2F@%23%2Fdst%2Fa.txt"
    tgt.faults.respond(507, "full", count=2, method="PUT")
    assert call(tgt.url, "GET", path)[0] == 200  # not a PUT
    assert call(tgt.url, "PUT", path, b"x")[:3:2] == (507, b"full")
    assert call(tgt.url, "PUT", path, b"x")[0] == 507
    assert call(tgt.url, "PUT", path, b"x")[0] == 200
    tgt.faults.respond(
        503, b"", {"Ais-Etl-Retry-Reason": "direct-put-transient"}, path="dst%2Fa.txt"
    )
    status, headers, _ = call(tgt.url, "GET", path)
    assert status == 503 and headers["ais-etl-retry-reason"] == "direct-put-transient"

    tgt.faults.reset()
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        call(tgt.url, "GET", path)
    tgt.faults.reset(mid_body=True)
    with pytest.raises((ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        call(tgt.url, "PUT", path, b"x" * 4_000_000)
    tgt.faults.close()
    with pytest.raises(http.client.RemoteDisconnected):
        call(tgt.url, "GET", path)
    tgt.faults.delay(0.2)
    started = time.monotonic()
    assert call(tgt.url, "GET", path)[0] == 200
    assert time.monotonic() - started >= 0.2
    assert tgt.faults.pending == []
    kinds = [r.fault for r in tgt.records("endpoint") if r.fault]
    assert kinds == ["respond", "respond", "respond", "reset", "reset-mid-body", "close", "delay"]


def test_refuse(tgt: EmulatedTarget) -> None:
    base = register(tgt)
    path = f"{base}/ais%2F@%23%2Fdst%2Fa.txt"
    tgt.faults.refuse(0.3)
    with pytest.raises(ConnectionRefusedError):
        call(tgt.url, "GET", path)
    time.sleep(0.4)
    assert call(tgt.url, "GET", path)[0] == 200


def test_uvloop_and_faults(raw_server: Callable[[Script], RawServer]) -> None:
    server = raw_server(lambda request, conn, n: response(200, request.body.upper()))
    with EmulatedTarget(use_uvloop=True, time_scale=0.001) as tgt:
        tgt.bucket("b").put("o", b"abc")
        tgt.attach("fast-etl", server.url)
        assert tgt.hpush("fast-etl", "b", "o", fqn=False).content == b"ABC"
        base = urlsplit(tgt.cluster.etl("fast-etl").target_url()).path
        tgt.faults.reset()
        with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
            call(tgt.url, "GET", f"{base}/ais%2F@%23%2Fb%2Fo")
        assert call(tgt.url, "GET", f"{base}/ais%2F@%23%2Fb%2Fo")[2] == b"abc"


def test_without_fqn_feature(raw_server: Callable[[Script], RawServer]) -> None:
    server = raw_server(lambda request, conn, n: response(200, request.body.upper()))
    with EmulatedTarget(pass_fqn=False) as tgt:
        tgt.bucket("b").put("o", b"abc")
        tgt.attach("pull-etl", server.url, comm="hpull")
        tgt.attach("push-etl", server.url)
        redirect = tgt.get("b", "o", etl="pull-etl", follow_redirects=False)
        assert redirect.status == 307 and "etl_fqn" not in (redirect.header("location") or "")
        assert tgt.get("b", "o", etl="push-etl").body == b"ABC"
        assert tgt.run_job("push-etl", "b", "dst").ok
        assert tgt.bucket("dst").get("o") == b"ABC"
    assert all("etl_fqn" not in r.uri for r in server.requests)


def test_expect_100_continue(tgt: EmulatedTarget) -> None:
    base = register(tgt)
    parts = urlsplit(tgt.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            f"PUT {base}/ais%2F@%23%2Fdst%2Fe.bin HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 3\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK\r\n")
    assert tgt.bucket("dst").get("e.bin") == b"abc"


def test_non_latin1_object_names(tgt: EmulatedTarget) -> None:
    base = register(tgt)
    tgt.bucket("dst").put("ünïcødé/名前.bin", b"x")
    path = f"{base}/ais%2F@%23%2Fdst%2F%C3%BCn%C3%AFc%C3%B8d%C3%A9%2F%E5%90%8D%E5%89%8D.bin"
    assert call(tgt.url, "GET", path)[::2] == (200, b"x")
    assert call(tgt.url, "HEAD", path)[0] == 200
