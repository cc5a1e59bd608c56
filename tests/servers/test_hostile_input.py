"""Hostile values in etl_fqn and Ais-Node-Url: a 400 in the one error format, in every server."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from aisetl.target import EmulatedTarget

from .conftest import FRAMEWORKS, REPO, TEST_ENV, health_ok, serve_argv

HOPS = ["http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:-1", "http://h:notaport"]
FQNS = ["%2500", "%252Ftmp%2500x"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedTarget]:
    with EmulatedTarget(tmp_path_factory.mktemp("hostile")) as tgt:
        for framework in FRAMEWORKS:
            tgt.launch(
                f"hostile-{framework}", serve_argv("tests.transformers:Upper", framework),
                env=TEST_ENV, cwd=str(REPO), init_timeout=60,
            )  # fmt: skip
        yield tgt


def put(url: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("PUT", path, body=b"abc", headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("hop", HOPS)
def test_a_hop_that_is_not_a_url(servers: EmulatedTarget, framework: str, hop: str) -> None:
    etl = servers.cluster.etl(f"hostile-{framework}")
    status, body = put(etl.url(), "/b/o", {"Ais-Node-Url": hop})
    assert status == 400, body
    assert body.startswith("Invalid pipeline header: hop") and "(object: b/o)" in body
    assert health_ok(etl)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("fqn", FQNS)
def test_a_nul_byte_in_etl_fqn(servers: EmulatedTarget, framework: str, fqn: str) -> None:
    etl = servers.cluster.etl(f"hostile-{framework}")
    status, body = put(etl.url(), f"/b/o?etl_fqn={fqn}", {})
    assert status == 400, body
    assert "holds a NUL byte: it cannot name a file (object: b/o)" in body
    assert health_ok(etl)
