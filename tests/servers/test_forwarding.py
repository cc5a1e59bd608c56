"""What a server sends to the next hop, byte for byte (PROTOCOL.md §8.4-§8.6, TV-35, TV-38)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from aisetl.target import Cluster

from ..target.rawserver import RawRequest, RawServer, response
from ..transformers import upper
from .conftest import FRAMEWORKS, REPO, TEST_ENV, payload, serve_argv


@pytest.fixture(scope="module")
def recorder() -> Iterator[RawServer]:
    """An ETL stage that records what it receives and answers as a stage that delivered 42 B."""

    def script(_request: RawRequest, _conn: object, _n: int) -> bytes:
        return response(204, headers={"Ais-Direct-Put-Length": "42"})

    server = RawServer(script).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, recorder: RawServer) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("fwd"), targets=2, placement="remote") as c:
        for framework in FRAMEWORKS:
            for kind, spec in (("buf", "Upper"), ("stream", "UpperStream")):
                c.launch(
                    f"{framework}-{kind}", serve_argv(f"tests.transformers:{spec}", framework),
                    env=TEST_ENV, cwd=str(REPO), init_timeout=60,
                )  # fmt: skip
        c.attach("recorder", recorder.url)
        yield c


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["buf", "stream"])
@pytest.mark.parametrize("comm", ["hpush", "hpull"])
def test_hop_request_and_answer(
    cluster: Cluster, recorder: RawServer, framework: str, kind: str, comm: str
) -> None:
    source = cluster.targets[0]
    bucket = source.bucket("fwd")
    data = payload(100_000, seed=8)
    # '#' would cut an hpush URL at the target (§5.6); hpull escapes it
    name = f"{framework}/{kind}/{comm}/obj name ü{'#1' if comm == 'hpull' else ''}.bin"
    bucket.put(name, data)
    cluster.bucket("fwd-dst")
    before = len(recorder.requests)
    result = cluster.run(
        source.core.copy(
            cluster.etl(f"{framework}-{kind}"), bucket, name, ("fwd-dst", "renamed 1.bin"),
            comm=comm, fqn=True, etl_args="a b,c", pipeline=[cluster.etl("recorder")],
        )
    )  # fmt: skip
    assert result.error is None and result.delivered, result  # TV-38: the hop's 204 passed on
    assert len(recorder.requests) == before + 1, "exactly one PUT to the hop"
    request = recorder.requests[-1]
    head = request.head.decode("latin-1")
    headers = {
        line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
        for line in head.split("\r\n")[1:]
        if ":" in line
    }
    target_line = urlsplit(request.uri)
    expected_path = "ais/@#/fwd/" + name if comm == "hpull" else "fwd/" + name
    assert request.method == "PUT"
    assert target_line.path == "/" + quote(expected_path, safe="/@")
    assert parse_qs(target_line.query) == {"etl_args": ["a b,c"]}  # forwarded; never etl_fqn
    remaining = headers["ais-node-url"]
    assert remaining.startswith(cluster.targets[1].url + "/")
    assert "renamed%201.bin" in remaining and "," not in remaining
    assert request.body == upper(data)
    if kind == "buf":
        assert headers["content-length"] == str(len(data))
    else:
        assert headers["transfer-encoding"] == "chunked"
