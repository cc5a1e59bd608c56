"""What a cluster would do, the local loop shows: ws failures, names, retries, wire gaps.

Each case runs real servers over real sockets against the emulated target (or a peer of the
test's own where a target cannot play the part), in every framework the case applies to.
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from aisetl.config import Settings
from aisetl.target import Cluster, EmulatedTarget, TransformResult

from ..target.rawserver import RawRequest, RawServer, response
from ..transformers import upper
from .conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, payload, serve_argv


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two targets (destinations owned by the other one) and one server of each kind."""
    with Cluster(
        tmp_path_factory.mktemp("truth"), targets=2, placement="remote", time_scale=0.01,
        ws_timeout=20,
    ) as c:  # fmt: skip
        for framework in FRAMEWORKS:
            for spec in ("Upper", "UpperStream", "Describe", "FailNamed", "ShowDirectPut"):
                argv = serve_argv(f"tests.transformers:{spec}", framework)
                c.launch(
                    f"{framework}-{spec.lower()}", argv,
                    comm="ws" if framework == "fastapi" else "hpush",
                    env=TEST_ENV, cwd=str(REPO), init_timeout=60, per_target=False,
                )  # fmt: skip
        yield c


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- ws: a failure the target cannot see -------------------------------------------------------


def test_ws_text_replies_are_reported_as_lost_objects(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """§7.4/D27: exactly the failing objects are reported, with what a cluster would do."""
    with EmulatedTarget(tmp_path_factory.mktemp("lost")) as tgt:
        etl = tgt.launch(
            "ws-lost", serve_argv("tests.transformers:FailNamed", "fastapi"), comm="ws",
            env=TEST_ENV, cwd=str(REPO), init_timeout=60,
        )  # fmt: skip
        src = tgt.bucket("ws-lost")
        names = ["good-1", "bad-1", "good-2", "dir/bad 2", "good-3"]
        for name in names:
            src.put(name, name.encode())
        report = tgt.run_job(etl, "ws-lost", "ws-lost-out", comm="ws")
        assert report.lost == 2 and report.failed == 2 and not report.ok and not report.aborted
        lost = sorted(error.obj_name for error in report.errors)
        assert lost == ["ais://ws-lost/bad-1", "ais://ws-lost/dir/bad 2"]
        for error in report.errors:
            assert "in a cluster this object would be stored empty or skipped" in error.msg
            assert "asked to fail" in error.msg  # the server's own reason
        out = tgt.bucket("ws-lost-out")
        assert sorted(out.iter_names()) == ["good-1", "good-2", "good-3"]  # bad ones: skipped
        assert out.get("good-2") == b"GOOD-2"
        assert health_ok(etl)
        log = etl.logs()
        assert "ws task for 'bad-1' failed (500)" in log and "stored empty or skipped" in log


def test_a_closed_ws_connection_strands_its_queued_tasks(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """§7.6: with AISETL_WS_ERRORS=close the failing task's connection closes (1011); the
    tasks queued behind it hang until the job's deadline, and the pool is never redialed."""
    with EmulatedTarget(tmp_path_factory.mktemp("close"), multiplier=1, ws_timeout=2) as tgt:
        etl = tgt.launch(
            "close-on-error", serve_argv("tests.transformers:FailNamed", "fastapi"), comm="ws",
            env={**TEST_ENV, "AISETL_WS_ERRORS": "close", "AISETL_INLINE_MAX_BYTES": "0"},
            cwd=str(REPO), init_timeout=60,
        )  # fmt: skip
        bucket = tgt.bucket("b")
        # The failing one takes 0.5 s: the two behind it are on the connection by then.
        for name in ("slow-bad", "after-1", "after-2"):
            bucket.put(name, payload(2000, seed=len(name)))

        async def three() -> list[TransformResult]:
            tasks = []
            for name in ("slow-bad", "after-1", "after-2"):
                tasks.append(asyncio.ensure_future(tgt.core.transform(etl, "b", name, fqn=False)))
                await asyncio.sleep(0.01)
            return list(await asyncio.gather(*tasks))

        started = time.monotonic()
        results = tgt.cluster.run(three(), timeout=30)
        assert time.monotonic() - started >= 1.5  # they waited for the deadline, not failed at once
        for result in results:
            assert result.error is not None, result
            assert "no ws reply within 2 s" in result.error.msg
            assert "stall until it is aborted" in result.error.msg
        assert "1011" in results[0].error.msg  # type: ignore[union-attr]
        pool = etl.inline_pools[0]
        assert pool.live == 0 and any("1011" in error for error in pool.errors)
        again = tgt.ws(etl, "b", "after-1", fqn=False)
        assert again.error is not None and "never dials its ws pool again" in again.error.msg
        assert health_ok(etl)  # the server itself is fine
        assert "tasks still queued on this connection hang" in etl.logs()


# --- names the Go target mangles (§5.6) ---------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hpush_names_reach_the_server_as_in_a_cluster(cluster: Cluster, framework: str) -> None:
    etl = f"{framework}-describe"
    target = cluster.targets[0]
    bucket = target.bucket("names")
    for name in ("a%41b", "what?.txt", "a#b"):
        bucket.put(name, b"content")
    for fqn in (False, True):
        # '%41' is sent as is; a decoding server sees 'A' (the data is right, the name not)
        seen = target.hpush(etl, "names", "a%41b", fqn=fqn)
        assert seen.content == b"bytes|names/aAb|", seen
        # '#' starts a fragment: the query (etl_fqn) is gone, and the name is cut
        cut = target.hpush(etl, "names", "a#b", fqn=fqn)
        assert cut.content == b"bytes|names/a|", cut
    # '?' in body mode: the name is cut, and nothing in the request proves it
    body = target.hpush(etl, "names", "what?.txt", fqn=False)
    assert body.content == b"bytes|names/what|", body
    # '?' with etl_fqn: the query key '.txt?etl_fqn' proves it; refused, never empty input
    refused = target.hpush(etl, "names", "what?.txt", fqn=True)
    assert refused.status == 400 and refused.error is not None, refused
    assert "probably 'names/what?.txt'" in refused.error.msg
    assert "use hpull or ws" in refused.error.msg
    assert health_ok(cluster.etl(etl))
    hpull = target.hpull(etl, "names", "what?.txt", fqn=True)  # hpull escapes the name
    assert hpull.content is not None and hpull.content.endswith(b"what?.txt|")


# --- retries the target relies on ---------------------------------------------------------


def test_streaming_ws_task_retries_a_refused_hop(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A one-shot ws payload none of which was read yet is retried like a buffered one."""
    with Cluster(tmp_path_factory.mktemp("refused"), targets=2, placement="remote") as c:
        c.launch(
            "stream", serve_argv("tests.transformers:UpperStream", "fastapi"), comm="ws",
            env={**TEST_ENV, "AISETL_RETRY_BACKOFF": "1.0"}, cwd=str(REPO), init_timeout=60,
            per_target=False,
        )  # fmt: skip
        data = payload(300_000, seed=5)
        c.bucket("src")
        owner = c.put("src", "one.bin", data)
        c.targets[1 - owner].faults.refuse(2.0)  # the destination's owner: refused
        report = c.run_job("stream", "src", "dst", comm="ws", fqn=False)
        assert report.errors == [] and report.delivered == 1, report
        assert c.get("dst", "one.bin") == upper(data)
        assert "retrying in 1.0s" in c.etl("stream").logs()


@pytest.fixture
def resend_once() -> Iterator[RawServer]:
    """An ETL stage that asks for a resend (503 + retry reason) once, then answers content."""

    def script(request: RawRequest, _conn: object, n: int) -> bytes:
        if n % 2 == 0:  # every first try of an object
            headers = {"Ais-Etl-Retry-Reason": "direct-put-transient"}
            return response(503, b"next hop refused; resend", headers)
        return response(200, b"STAGE:" + request.body[:5])

    server = RawServer(script).start()
    yield server
    server.stop()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_downstream_resend_request(
    cluster: Cluster, resend_once: RawServer, framework: str
) -> None:
    """§8.8: a replayable body is resent to the stage; a one-shot body passes the 503 on, and
    the target resends the whole request."""
    name = f"stage-{framework}"
    if name not in cluster.etls:
        cluster.attach(name, resend_once.url)
    target = cluster.targets[0]
    bucket = target.bucket("resend")
    bucket.put("obj", b"abcdefgh")
    buffered = target.transform(
        f"{framework}-upper", bucket, "obj", comm="hpush", fqn=False, pipeline=[name]
    )
    assert buffered.content == b"STAGE:ABCDE" and buffered.attempts == 1, buffered
    assert len(resend_once.requests) == 2  # resent by the server itself
    stream = target.transform(
        f"{framework}-upperstream", bucket, "obj", comm="hpush", fqn=False, pipeline=[name]
    )
    assert stream.content == b"STAGE:ABCDE", stream
    assert stream.attempts == 2  # the server answered 503 + reason; the target resent the PUT
    assert len(resend_once.requests) == 4


# --- wire gaps --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """A small HTTP server of the test's own that download requests fetch from."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ok.txt":
                body = b"hello download"
                self.send_response(200)
            else:
                body = b"no such file here"
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def post(url: str, path: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_download_endpoint(cluster: Cluster, origin: str, framework: str, closed_port: int) -> None:
    """§13: POST /download fetches, transforms (object_to is the path), answers the result."""
    for spec in ("upper", "upperstream", "describe"):
        etl = cluster.etl(f"{framework}-{spec}")
        status, body = post(
            etl.url(), f"/download?original_url={quote(origin + '/ok.txt', safe='')}"
            f"&object_to=dst%2Fa%20b.txt&etl_args=+x+",
        )  # fmt: skip
        expected = b"bytes|dst/a b.txt|x" if spec == "describe" else b"HELLO DOWNLOAD"
        assert (status, body) == (200, expected), spec
    etl = cluster.etl(f"{framework}-upper")
    status, body = post(etl.url(), f"/download?original_url={origin}/gone.txt&object_to=o")
    assert status == 404 and b"answered 404: no such file here (object: o)" in body
    gone = f"http://127.0.0.1:{closed_port}/x"
    status, body = post(etl.url(), f"/download?original_url={gone}&object_to=o")
    assert status == 502 and b"Fetching original_url" in body and b"(object: o)" in body
    status, body = post(etl.url(), "/download?object_to=o")
    assert status == 400 and b"needs the query parameter(s) original_url" in body
    status, body = post(etl.url(), "/download?original_url=ftp://x/y&object_to=o")
    assert status == 400 and b"is not an http:// or https:// URL" in body
    assert health_ok(etl)


@pytest.fixture(scope="module")
def stage() -> Iterator[RawServer]:
    """An ETL stage that records what it receives and answers 204."""

    def script(_request: RawRequest, _conn: object, _n: int) -> bytes:
        return response(204)

    server = RawServer(script).start()
    yield server
    server.stop()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_repeated_node_url_header_first_copy_counts(
    cluster: Cluster, stage: RawServer, framework: str
) -> None:
    """As Go's Header.Get: the first Ais-Node-Url counts, the second is ignored."""
    etl = cluster.etl(f"{framework}-upper")
    host, port = etl.url().removeprefix("http://").split(":")
    before = len(stage.requests)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("PUT", "/b/obj", skip_accept_encoding=True)
        conn.putheader("Ais-Node-Url", stage.url)
        conn.putheader("Ais-Node-Url", "http://127.0.0.1:1")
        conn.putheader("Content-Length", "3")
        conn.endheaders(b"abc")
        answer = conn.getresponse()
        assert answer.status == 204, answer.read()
    finally:
        conn.close()
    assert len(stage.requests) == before + 1
    forwarded = stage.requests[-1]
    assert forwarded.body == b"ABC"
    assert b"ais-node-url" not in forwarded.head.lower()  # nothing left after the first hop


def test_direct_put_is_read_in_both_spellings() -> None:
    base = {"AIS_TARGET_URL": "http://t"}
    assert Settings.from_env({**base, "direct_put": "true"}).direct_put
    assert Settings.from_env({**base, "DIRECT_PUT": "true"}).direct_put
    assert not Settings.from_env({**base, "direct_put": "false", "DIRECT_PUT": "true"}).direct_put


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_direct_put_as_the_target_sets_it(cluster: Cluster, framework: str) -> None:
    cluster.targets[0].bucket("dp").put("o", b"x")
    seen = cluster.targets[0].hpush(f"{framework}-showdirectput", "dp", "o", fqn=False)
    assert seen.content == b"True"  # from the lower-case variable, the only one a target sets


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hpull_passes_latest_ver_on(cluster: Cluster, framework: str) -> None:
    target = cluster.targets[0]
    bucket = target.bucket("latest")
    bucket.put("o.txt", b"fresh")
    cluster.clear_records()
    fetched = target.transform(
        f"{framework}-upper", bucket, "o.txt", comm="hpull", fqn=False, latest_ver=True
    )
    assert fetched.content == b"FRESH", fetched
    gets = cluster.records("endpoint", method="GET")
    assert gets and all("latest-ver=true" in record.uri for record in gets), gets
    cluster.clear_records()
    # With an FQN the target still passes the file; the server reads it (PROTOCOL.md D22)
    local = target.transform(
        f"{framework}-upper", bucket, "o.txt", comm="hpull", fqn=True, latest_ver=True
    )
    assert local.content == b"FRESH" and not cluster.records("endpoint", method="GET")


# --- the reference's command line -------------------------------------------------------


def read_reply(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body (b"" when the server closed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_plain_uvicorn_command_line_keeps_connections_longer_than_a_target(
    tmp_path_factory: pytest.TempPathFactory, held_port: int
) -> None:
    """``uvicorn module:app`` (uvicorn's 5 s keep-alive) is raised above a target's 6 s."""
    port = held_port
    log = tmp_path_factory.mktemp("uvicorn") / "log"
    env = {"AIS_TARGET_URL": "http://127.0.0.1:1/v1/etl/_object/x/abcdefghij", **TEST_ENV}
    argv = [
        sys.executable, "-m", "uvicorn", "tests.servers.plain_uvicorn_app:app",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=str(REPO), stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.1)
        with sock:
            request = b"PUT /b/o HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
            sock.sendall(request)
            assert read_reply(sock).endswith(b"\r\n\r\nAB")
            time.sleep(6.5)  # longer than uvicorn's default keep-alive and a target's idle time
            sock.sendall(request)
            assert read_reply(sock).endswith(b"\r\n\r\nAB"), "the server closed an idle connection"
        assert "raised to 75 s" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
