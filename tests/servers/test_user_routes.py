"""``.app`` is a real FastAPI / Flask app: routes users add work, and so does the protocol."""

from __future__ import annotations

import urllib.request

import pytest

from aisetl.target import EmulatedTarget

from .conftest import REPO, TEST_ENV, health_ok, payload, serve_argv


@pytest.mark.parametrize(
    ("framework", "spec"),
    [
        ("fastapi", "tests.route_servers:FastAPIWithRoutes"),
        ("flask", "tests.route_servers:FlaskWithRoutes"),
    ],
)
def test_user_routes_and_the_protocol_side_by_side(
    tmp_path_factory: pytest.TempPathFactory, framework: str, spec: str
) -> None:
    with EmulatedTarget(tmp_path_factory.mktemp("routes")) as target:
        etl = target.launch(
            f"{framework}-routes", serve_argv(spec, framework),
            comm="ws" if framework == "fastapi" else "hpush", env=TEST_ENV, cwd=str(REPO),
            init_timeout=60,
        )  # fmt: skip
        with urllib.request.urlopen(etl.url() + "/metrics", timeout=5) as response:
            assert response.read() == b"objects_total 0\n"
        bucket = target.bucket("b")
        data = payload(70_000, seed=1)
        bucket.put("metrics", data)  # an object that shares the route's name
        comms = ("hpush", "hpull", "ws") if framework == "fastapi" else ("hpush", "hpull")
        for comm in comms:
            for fqn in (False, True):
                result = target.transform(etl, bucket, "metrics", comm=comm, fqn=fqn)
                assert result.content == data.upper(), (comm, fqn, result.error)
        assert health_ok(etl)
