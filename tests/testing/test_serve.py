"""``aisetl.testing``: real servers, every communication type, errors, and clean-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aisetl.loader import LoadError
from aisetl.testing import LocalETL, ServerStartError, TransformFailed, serve, server_spec

from .servers import Crash, Env, PathEcho, Upper

SERVERS = Path(__file__).with_name("servers.py")
ALL_MODES = [(comm, fqn) for comm in ("hpush", "hpull", "ws") for fqn in (False, True)]


@pytest.fixture(scope="module")
def upper() -> LocalETL:
    with serve(Upper, framework="fastapi", env={"ETL_DIRECT_FQN": "false"}) as etl:
        yield etl


@pytest.mark.parametrize(("comm", "fqn"), ALL_MODES)
def test_every_mode(upper: LocalETL, comm: str, fqn: bool) -> None:
    assert upper.transform(b"abc", comm=comm, fqn=fqn, etl_args="!") == b"ABC!"


@pytest.mark.parametrize("comm", ["hpush", "hpull", "ws"])
def test_error_raises_transform_failed(upper: LocalETL, comm: str) -> None:
    with pytest.raises(TransformFailed) as info:
        upper.transform(b"bad input", comm=comm, path="imgs/a b.jpg")
    if comm == "ws":  # ws has no error channel: the server's text reply carries the message
        assert "in a cluster this object would be stored empty or skipped" in info.value.message
        assert "cannot take" in info.value.message and "a b.jpg" in info.value.message
        return
    assert info.value.status == 415
    assert "cannot take" in info.value.message and "imgs/a b.jpg" in info.value.message
    assert info.value.path == "imgs/a b.jpg"


def test_send_does_not_raise(upper: LocalETL) -> None:
    result = upper.send(b"boom", comm="hpull")
    assert not result.ok
    assert result.status == 500
    assert result.content is None
    assert result.error and "exploded" in result.error
    good = upper.send("text is encoded", path="b/nested/obj name.txt")
    assert good.ok and good.content == b"TEXT IS ENCODED" and good.status == 200
    assert not good.delivered


def test_transform_failed_carries_the_server_log(upper: LocalETL) -> None:
    with pytest.raises(TransformFailed) as info:
        upper.transform(b"boom")
    assert "server log" in str(info.value)
    assert "exploded" in upper.logs


def test_properties(upper: LocalETL) -> None:
    assert upper.url.startswith("http://127.0.0.1:")
    assert upper.pid is not None and upper.pid != os.getpid()
    assert upper.target.bucket("bucket").root.is_dir()
    assert upper.name in repr(upper)


def test_bad_path_and_comm(upper: LocalETL) -> None:
    with pytest.raises(ValueError, match="bucket/object"):
        upper.transform(b"x", path="no-object")
    with pytest.raises(ValueError, match="unknown comm"):
        upper.transform(b"x", comm="grpc")


def test_direct_fqn_env_and_framework() -> None:
    with serve(Upper, framework="http", direct_fqn=True) as etl:
        assert etl.transform(b"abc", fqn=True) == b"FQN:ABC"
        assert etl.transform(b"abc", comm="hpull") == b"ABC"  # no file: bytes as usual


def test_env_and_path_as_string_specs() -> None:
    with serve(f"{SERVERS}:Env", env={"COLOUR": "teal"}, framework="flask") as etl:
        assert etl.transform(b"", etl_args="COLOUR") == b"teal"
        assert etl.transform(b"", etl_args="AIS_TARGET_URL").startswith(b"http://127.0.0.1:")
        assert etl.transform(b"", etl_args="direct_put") == b"true"  # as a target spells it
    with serve(f"{PathEcho.__module__}:PathEcho") as etl:
        assert etl.transform(b"", path="bkt/dir/a b.txt", comm="ws") == b"dir/a b.txt"


def test_server_stops_at_exit() -> None:
    with serve(PathEcho, framework="http") as etl:
        process = etl.etl.processes[0]
        assert process.alive
    assert not process.alive


def test_fixture(etl_server) -> None:  # type: ignore[no-untyped-def]
    first = etl_server(Upper, framework="http")
    second = etl_server(Env, framework="http", env={"X": "1"})
    assert first.transform(b"a") == b"A"
    assert second.transform(b"", etl_args="X") == b"1"
    assert first.url != second.url


def test_crashing_server_shows_its_log() -> None:
    with pytest.raises(ServerStartError) as info, serve(Crash, framework="http", timeout=20):
        pass
    assert "model file missing" in str(info.value)


def test_server_spec() -> None:
    assert server_spec(Upper) == f"{Upper.__module__}:Upper"
    assert Upper.__module__.endswith("testing.servers")
    assert server_spec("pkg.mod:Cls") == "pkg.mod:Cls"

    class Local(Upper):
        pass

    with pytest.raises(LoadError, match="module level"):
        server_spec(Local)
    with pytest.raises(TypeError):
        server_spec(int)  # type: ignore[arg-type]


def test_wrong_framework_is_refused() -> None:
    from aisetl.flask_server import FlaskServer

    with pytest.raises(LoadError, match="flask"):
        server_spec_and_serve(FlaskServer)
    with pytest.raises(ValueError, match="unknown framework"), serve(Upper, framework="tornado"):
        pass
    with pytest.raises(ValueError, match="workers"), serve(Upper, workers=0):
        pass


def server_spec_and_serve(base: type) -> None:
    """Serve a Flask-built class on FastAPI: refused before anything starts."""
    with serve(base, framework="fastapi"):  # type: ignore[arg-type]
        pass
