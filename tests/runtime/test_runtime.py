"""``aisetl runtime`` end to end, without a container: the classes below are cloudpickled by
value (their module is not importable where the runtime runs), handed to the runtime in
``ETL_CLASS_PAYLOAD`` and driven by the emulated target over every comm type they support."""

from __future__ import annotations

import base64
import os
import pickle
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from aisetl import ETLServer, TransformError
from aisetl.fastapi_server import FastAPIServer
from aisetl.flask_server import FlaskServer
from aisetl.http_multi_threaded_server import HTTPMultiThreadedServer
from aisetl.loader import load_server_class
from aisetl.payload import encode_class
from aisetl.target import EmulatedTarget
from aisetl.testing import LocalETL, TransformFailed

from .conftest import fake_tool, last_line, launch, run_failing, tiny_wheel

PREFIX = b"rt:"
ALL_MODES = [(comm, fqn) for comm in ("hpush", "hpull", "ws") for fqn in (False, True)]
NO_SUCH_PACKAGE = "aisetl-no-such-package==0.0.1"
HTTP_MODES = [(comm, fqn) for comm in ("hpush", "hpull") for fqn in (False, True)]


def shout(data: bytes | str) -> bytes:
    """The transform: upper case behind a prefix; a file path (ETL_DIRECT_FQN) is marked."""
    if isinstance(data, str):
        with open(data, "rb") as file:
            return b"file:" + PREFIX + file.read().upper()
    return PREFIX + data.upper()


def check(etl_args: str) -> None:
    if etl_args == "reject":
        raise TransformError(415, "cannot take this object: asked to reject")


class ShoutFastAPI(FastAPIServer):
    """A reference-style ``__init__`` (no address arguments) that sets state."""

    def __init__(self) -> None:
        super().__init__()
        self.suffix = b"!"

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        check(etl_args)
        return shout(data) + self.suffix


class ShoutFlask(FlaskServer):
    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        check(etl_args)
        return shout(data)


class ShoutHTTP(HTTPMultiThreadedServer):
    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        check(etl_args)
        return shout(data)


class ShoutPlain(ETLServer):
    """Built on plain ETLServer: the runtime serves it on FastAPI."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        check(etl_args)
        return shout(data)


class UsesTiny(FastAPIServer):
    """Needs a package that only ``PACKAGES`` installs."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        import tinyword  # type: ignore[import-not-found]

        word: bytes = tinyword.WORD
        return word + b":" + (data.encode() if isinstance(data, str) else data)


class Broken(FastAPIServer):
    def __init__(self) -> None:
        super().__init__()
        raise RuntimeError("the model file is missing")

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return b""


class NoTransform(FastAPIServer):
    pass


def payload_env(cls: type, **extra: str) -> dict[str, str]:
    return {"ETL_CLASS_PAYLOAD": encode_class(cls), **extra}


@pytest.fixture(scope="module")
def fastapi_etl(target: EmulatedTarget, workdir: Path) -> LocalETL:
    return launch(target, "rt-fastapi", payload_env(ShoutFastAPI), workdir)


@pytest.fixture(scope="module")
def flask_etl(target: EmulatedTarget, workdir: Path) -> LocalETL:
    return launch(target, "rt-flask", payload_env(ShoutFlask), workdir)


@pytest.fixture(scope="module")
def http_etl(target: EmulatedTarget, workdir: Path) -> LocalETL:
    """Two worker processes, forked from the runtime after it unpickled the class."""
    return launch(target, "rt-http", payload_env(ShoutHTTP, NUM_WORKERS="2"), workdir)


@pytest.fixture(scope="module")
def plain_etl(target: EmulatedTarget, workdir: Path) -> LocalETL:
    env = payload_env(ShoutPlain, ETL_DIRECT_FQN="true")
    return launch(target, "rt-plain", env, workdir)


@pytest.mark.parametrize(("comm", "fqn"), ALL_MODES)
def test_fastapi_every_mode(fastapi_etl: LocalETL, comm: str, fqn: bool) -> None:
    got = fastapi_etl.transform(b"abc", comm=comm, fqn=fqn, path="imgs/a b.txt")
    assert got == b"rt:ABC!"


@pytest.mark.parametrize(("comm", "fqn"), HTTP_MODES)
def test_flask_every_mode(flask_etl: LocalETL, comm: str, fqn: bool) -> None:
    assert flask_etl.transform(b"abc", comm=comm, fqn=fqn) == b"rt:ABC"


@pytest.mark.parametrize(("comm", "fqn"), HTTP_MODES)
def test_http_every_mode(http_etl: LocalETL, comm: str, fqn: bool) -> None:
    assert http_etl.transform(b"abc", comm=comm, fqn=fqn) == b"rt:ABC"


@pytest.mark.parametrize(("comm", "fqn"), ALL_MODES)
def test_plain_class_on_fastapi_with_direct_fqn(plain_etl: LocalETL, comm: str, fqn: bool) -> None:
    expected = b"file:rt:ABC" if fqn else b"rt:ABC"
    assert plain_etl.transform(b"abc", comm=comm, fqn=fqn) == expected


def test_the_logs_say_what_started(fastapi_etl: LocalETL, http_etl: LocalETL) -> None:
    assert "serving ShoutFastAPI (fastapi) from ETL_CLASS_PAYLOAD on 127.0.0.1:" in (
        fastapi_etl.logs
    )
    assert "serving ShoutHTTP (http)" in http_etl.logs and "2 worker(s)" in http_etl.logs


@pytest.mark.parametrize("framework", ["fastapi", "flask", "http"])
@pytest.mark.parametrize("comm", ["hpush", "hpull"])
def test_a_transform_error_is_answered_and_health_stays(
    request: pytest.FixtureRequest, framework: str, comm: str
) -> None:
    etl: LocalETL = request.getfixturevalue(f"{framework}_etl")
    with pytest.raises(TransformFailed) as info:
        etl.transform(b"x", comm=comm, etl_args="reject", path="b/bad.bin")
    assert info.value.status == 415
    assert "asked to reject" in info.value.message and "b/bad.bin" in info.value.message
    assert etl.transform(b"ok", comm=comm).startswith(b"rt:OK")
    with urllib.request.urlopen(etl.url + "/health", timeout=5) as reply:
        assert (reply.status, reply.read()) == (200, b"Running")


def test_etl_class_names_code_in_the_image(target: EmulatedTarget, tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(
        "from aisetl import FlaskServer\n\n"
        "class Reverse(FlaskServer):\n"
        "    def transform(self, data, path, etl_args):\n"
        "        return bytes(reversed(data))\n"
    )
    etl = launch(target, "rt-etl-class", {"ETL_CLASS": "server:Reverse"}, tmp_path)
    assert etl.transform(b"abc", comm="hpull") == b"cba"
    assert "from ETL_CLASS=server:Reverse" in etl.logs


def test_packages_are_installed_before_the_class_runs(
    target: EmulatedTarget, tmp_path: Path
) -> None:
    wheel = tiny_wheel(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    env = payload_env(UsesTiny, PACKAGES=f" {wheel} ")
    env |= {"PIP_TARGET": str(site), "PYTHONPATH": str(site), "PIP_NO_INDEX": "1"}
    etl = launch(target, "rt-packages", env, tmp_path)
    assert etl.transform(b"abc", comm="ws") == b"tiny:abc"
    assert (site / "tinyword.py").is_file()
    assert f"installing PACKAGES: {wheel}" in etl.logs


def test_a_satisfied_specifier_and_os_packages_with_apt_get(
    target: EmulatedTarget, tmp_path: Path
) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "installs.log"
    bin_dir.mkdir()
    fake_tool(bin_dir, "apt-get", log=log)
    env = payload_env(ShoutFlask, PACKAGES="pyyaml>=5,<1000", OS_PACKAGES="ffmpeg, libsndfile1")
    env |= {"PATH": str(bin_dir), "PIP_NO_INDEX": "1"}
    etl = launch(target, "rt-os-packages", env, tmp_path)
    assert etl.transform(b"abc") == b"rt:ABC"
    assert log.read_text().splitlines() == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends ffmpeg libsndfile1",
    ]
    assert "installing PACKAGES: pyyaml>=5,<1000" in etl.logs
    assert "Requirement already satisfied: pyyaml" in etl.logs


# --- every failure: one line on stderr, exit status 1 ------------------------------------


def _not_pickle() -> dict[str, str]:
    return {"ETL_CLASS_PAYLOAD": base64.b64encode(b"not a pickle at all").decode()}


def _an_int() -> dict[str, str]:
    return {"ETL_CLASS_PAYLOAD": base64.b64encode(pickle.dumps(42)).decode()}


def _by_reference() -> dict[str, str]:
    return {"ETL_CLASS_PAYLOAD": encode_class(ShoutFastAPI, by_value=[])}


def _aistore_class() -> dict[str, str]:
    # What a class built on the aistore SDK pickles to: a reference to the SDK's module.
    pickled = b"caistore.sdk.etl.webserver.fastapi_server\nFastAPIServer\n."
    return {"ETL_CLASS_PAYLOAD": base64.b64encode(pickled).decode()}


FAILURES: dict[str, tuple[Callable[[], dict[str, str]], str]] = {
    "nothing": (dict, "no server class: set ETL_CLASS_PAYLOAD"),
    "empty": (lambda: {"ETL_CLASS_PAYLOAD": "  "}, "ETL_CLASS_PAYLOAD is empty"),
    "not-base64": (
        lambda: {"ETL_CLASS_PAYLOAD": "not base64!"},
        "ETL_CLASS_PAYLOAD is not valid base64",
    ),
    "not-a-pickle": (_not_pickle, "cannot unpickle ETL_CLASS_PAYLOAD"),
    "not-a-class": (_an_int, "holds an object of type int, not an aisetl server class"),
    "by-reference": (_by_reference, "needs module 'tests', which this image does not have"),
    "aistore-class": (_aistore_class, "built on the aistore SDK"),
    "other-python": (
        lambda: payload_env(ShoutFastAPI, AISETL_PAYLOAD_PYTHON="3.9"),
        "pickled on Python 3.9 but this image runs Python",
    ),
    "init-raises": (
        lambda: payload_env(Broken),
        "Broken() failed: RuntimeError: the model file is missing",
    ),
    "no-transform": (
        lambda: payload_env(NoTransform),
        "ETL_CLASS_PAYLOAD: NoTransform must override transform() or transform_stream()",
    ),
    "no-target-url": (
        lambda: payload_env(ShoutFastAPI, AIS_TARGET_URL=""),
        "Environment variable 'AIS_TARGET_URL' must be set",
    ),
    "both": (
        lambda: payload_env(ShoutFastAPI, ETL_CLASS="server:X"),
        "both ETL_CLASS_PAYLOAD and ETL_CLASS are set",
    ),
    "bad-etl-class": (
        lambda: {"ETL_CLASS": "no_such_module_here:X"},
        "ETL_CLASS=no_such_module_here:X: no module named 'no_such_module_here'",
    ),
    "pip-fails": (
        lambda: payload_env(ShoutFastAPI, PACKAGES=NO_SUCH_PACKAGE, PIP_NO_INDEX="1"),
        "PACKAGES: `",
    ),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failures_are_one_line_and_exit_1(case: str, tmp_path: Path) -> None:
    make_env, expected = FAILURES[case]
    done = run_failing(make_env(), tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    line = last_line(done.stderr)
    assert line.startswith("aisetl runtime: error: "), done.stderr
    assert expected in line, done.stderr
    assert "Traceback" not in done.stderr or case == "init-raises"


def test_pip_failure_names_the_requirement_and_pips_reason(tmp_path: Path) -> None:
    env = payload_env(ShoutFastAPI, PACKAGES=NO_SUCH_PACKAGE, PIP_NO_INDEX="1")
    line = last_line(run_failing(env, tmp_path).stderr)
    assert "-m pip install aisetl-no-such-package==0.0.1` failed: ERROR: " in line
    assert re.search(r"(No matching distribution|Could not find a version)", line), line


def test_os_packages_prefer_apk_and_report_its_error(tmp_path: Path) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "installs.log"
    bin_dir.mkdir()
    fake_tool(bin_dir, "apt-get", log=log)
    fake_tool(bin_dir, "apk", log=log, fail_with="ERROR: unable to select packages: nosuchpkg")
    env = payload_env(ShoutFastAPI, OS_PACKAGES="nosuchpkg", PATH=str(bin_dir))
    done = run_failing(env, tmp_path)
    assert done.returncode == 1
    assert last_line(done.stderr) == (
        "aisetl runtime: error: OS_PACKAGES: `apk add --no-cache nosuchpkg` failed: "
        "ERROR: unable to select packages: nosuchpkg"
    )
    assert log.read_text() == "apk add --no-cache nosuchpkg\n"  # apt-get was not tried


def test_os_packages_without_a_package_manager(tmp_path: Path) -> None:
    env = payload_env(ShoutFastAPI, OS_PACKAGES="ffmpeg", PATH=str(tmp_path))
    done = run_failing(env, tmp_path)
    assert done.returncode == 1
    assert "OS_PACKAGES is set but this image has neither apk nor apt-get" in last_line(done.stderr)


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        full = {**os.environ, **payload_env(ShoutHTTP), "AIS_TARGET_URL": "http://127.0.0.1:9/x"}
        done = subprocess.run(
            [sys.executable, "-m", "aisetl", "runtime", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env=full, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    line = last_line(done.stderr)
    assert line.startswith("aisetl runtime: error: cannot listen on 127.0.0.1:"), done.stderr


def test_a_second_module_travels_only_when_asked(target: EmulatedTarget, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    util, server = f"rt_util_{os.getpid()}", f"rt_server_{os.getpid()}"
    (code / f"{util}.py").write_text("def twice(data):\n    return data + data\n")
    (code / f"{server}.py").write_text(
        f"from aisetl import FlaskServer\nfrom {util} import twice\n\n"
        "class Twice(FlaskServer):\n"
        "    def transform(self, data, path, etl_args):\n"
        "        return twice(data)\n"
    )
    cls = load_server_class(f"{code}/{server}.py:Twice")
    done = run_failing({"ETL_CLASS_PAYLOAD": encode_class(cls)}, tmp_path)
    assert done.returncode == 1
    assert f"needs module '{util}', which this image does not have" in last_line(done.stderr)
    both = encode_class(cls, by_value=[server, util])
    etl = launch(target, "rt-second-module", {"ETL_CLASS_PAYLOAD": both}, tmp_path)
    assert etl.transform(b"ab") == b"abab"
