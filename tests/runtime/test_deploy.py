"""``aisetl.deploy``: the init message of an aisetl class (PROTOCOL.md §12.1, TV-05), the checks
that refuse a message that could not start, and the send through the real ``aistore`` client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aisetl import ETLServer, spec
from aisetl.deploy import (
    DeployError,
    check_python,
    deploy,
    image_python,
    init_message,
    spec_text,
)
from aisetl.flask_server import FlaskServer
from aisetl.payload import PAYLOAD_PYTHON, python_version, split_packages
from aisetl.target import EmulatedTarget

from ..reference import REPO, reference_python
from .conftest import launch

HERE = python_version()
IMAGE = "registry.example.com/aisetl-runtime:{python}"


class Upper(FlaskServer):
    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return data.upper() if isinstance(data, bytes) else data.encode()


UNPICKLE = """
import base64, pickle, sys
from aisetl.flask_server import FlaskServer
cls = pickle.loads(base64.b64decode(sys.stdin.read(), validate=True))
print(cls.__name__, issubclass(cls, FlaskServer))
"""


def env_of(message: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in message["runtime"]["env"]}


def test_the_message_of_init_class(tmp_path: Path) -> None:
    message = init_message(
        Upper,
        "upper-etl",
        image=IMAGE,
        dependencies=["numpy", "pillow==10.0"],
        os_packages=["ffmpeg"],
        direct_file_access=True,
        env={"NUM_WORKERS": 8},
    )
    assert message["name"] == "upper-etl"
    assert message["runtime"]["image"] == f"registry.example.com/aisetl-runtime:{HERE}"
    assert "command" not in message["runtime"]
    assert (message["communication"], message["support_direct_put"]) == ("hpush://", True)
    assert (message["init_timeout"], message["obj_timeout"]) == ("5m", "45s")
    names = [item["name"] for item in message["runtime"]["env"]]
    assert names == [
        "ETL_CLASS_PAYLOAD",
        "PACKAGES",
        "OS_PACKAGES",
        "NUM_WORKERS",
        "ETL_DIRECT_FQN",
        "AISETL_PAYLOAD_PYTHON",
        "AISETL_PAYLOAD_AISETL",
        "AISETL_OBJ_TIMEOUT",  # the server's deadline: the pod is not told obj_timeout
    ]
    env = env_of(message)
    assert env["AISETL_OBJ_TIMEOUT"] == "45"
    assert env["PACKAGES"] == "numpy,pillow==10.0" and env["OS_PACKAGES"] == "ffmpeg"
    assert env["NUM_WORKERS"] == "8" and env["ETL_DIRECT_FQN"] == "true"
    assert env[PAYLOAD_PYTHON] == HERE
    # By value: it loads where this test module cannot be imported.
    done = subprocess.run(
        [sys.executable, "-c", UNPICKLE],
        input=env["ETL_CLASS_PAYLOAD"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Upper", "True"]


def test_packages_round_trip_with_commas_in_specifiers() -> None:
    message = init_message(Upper, "upper-etl", image=IMAGE, dependencies=["numpy>=1.24,<2", "x"])
    assert split_packages(env_of(message)["PACKAGES"]) == ["numpy>=1.24,<2", "x"]


def test_the_spec_file_is_the_same_message(tmp_path: Path) -> None:
    message = init_message(Upper, "upper-etl", image=IMAGE, comm_type="hpull")
    (found,) = spec.loads(spec_text(message))
    assert found.name == "upper-etl" and found.communication == "hpull://"
    assert found.image == message["runtime"]["image"]
    assert found.environment() == env_of(message)
    assert found.support_direct_put and found.init_timeout == 300 and found.obj_timeout == 45


@pytest.mark.parametrize(
    ("image", "python"),
    [
        ("reg/aisetl-runtime:3.12", "3.12"),
        ("reg/aisetl-runtime:3.10-alpine", "3.10"),
        ("reg:5000/team/aisetl-runtime:3.13.1-slim", "3.13"),
        ("reg:5000/aisetl-runtime", None),
        ("aisetl-runtime:latest", None),
        ("aisetl-runtime:1.0", None),
        ("aisetl-runtime:3.12@sha256:abcd", "3.12"),
        ("aisetl-runtime:3.1x", None),
    ],
)
def test_the_python_an_image_tag_names(image: str, python: str | None) -> None:
    assert image_python(image) == python


def test_an_image_for_another_python_is_refused() -> None:
    other = "3.10" if HERE != "3.10" else "3.11"
    with pytest.raises(DeployError) as info:
        init_message(Upper, "upper-etl", image=f"reg/aisetl-runtime:{other}")
    text = str(info.value)
    assert f"runs Python {other} (its tag)" in text and f"pickled on Python {HERE}" in text
    assert f"--build-arg PYTHON={HERE}" in text


def test_an_unsupported_client_python_is_refused_unless_the_tag_names_it() -> None:
    with pytest.raises(DeployError, match=r"built for Python 3\.10, 3\.11, 3\.12, 3\.13"):
        check_python("reg/aisetl-runtime:latest", python="3.14")
    check_python("reg/aisetl-runtime:3.14", python="3.14")  # an image built for it


def test_a_payload_over_the_environment_limit_is_refused() -> None:
    class Heavy(FlaskServer):
        TABLE = os.urandom(100 * 1024)  # captured in the class: base64 makes it 133 KiB

        def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
            return self.TABLE[:1]

    with pytest.raises(DeployError) as info:
        init_message(Heavy, "heavy-etl", image=IMAGE)
    assert "ETL_CLASS_PAYLOAD is 1" in str(info.value)
    assert "more than the 128 KiB Linux allows" in str(info.value)
    assert "load models and tables in __init__" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"comm_type": "ws"}, "Upper cannot serve ws [(]it serves hpush, hpull[)]"),
        ({"comm_type": "grpc"}, "unknown communication type 'grpc'"),
        ({"comm_type": "ws", "direct_put": False}, "for ws use a FastAPIServer"),
        ({"env": {"PACKAGES": "x"}}, "PACKAGES is set by init_class itself"),
        ({"env": {"image": "x"}}, "a variable named 'image' cannot be passed"),
        ({"init_timeout": "5 minutes"}, "init_timeout: unknown unit"),
    ],
)
def test_messages_that_could_not_start_are_refused(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(DeployError, match=problem.replace("(", r"\(")):
        init_message(Upper, "upper-etl", image=IMAGE, **kwargs)


def test_ws_without_direct_put_is_refused_for_fastapi_too() -> None:
    class Plain(ETLServer):
        def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
            return b""

    with pytest.raises(DeployError, match="ws:// requires support_direct_put: true"):
        init_message(Plain, "plain-etl", image=IMAGE, comm_type="ws", direct_put=False)


def test_what_is_not_a_server_class_is_refused() -> None:
    class NoTransform(FlaskServer):
        pass

    with pytest.raises(DeployError, match="is not an aisetl server class"):
        init_message(dict, "upper-etl", image=IMAGE)  # type: ignore[arg-type]
    with pytest.raises(DeployError, match="must override transform"):
        init_message(NoTransform, "upper-etl", image=IMAGE)
    with pytest.raises(DeployError, match="neither an aistore Client nor an Etl"):
        deploy(object(), Upper, "upper-etl", image=IMAGE)


# --- sent with the aistore SDK's own client, then started by the runtime ------------------


class _Proxy(BaseHTTPRequestHandler):
    """Plays an AIStore proxy's ``PUT /v1/etl``: records the body, answers a job ID."""

    received: list[tuple[str, str, bytes]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((self.path, self.headers.get("Content-Type", ""), body))
        answer = b"etl-job-1"
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


CLIENT_SCRIPT = """
import sys
from aistore import Client
from aisetl import ETLServer
from aisetl.deploy import init_class

SUFFIX = b"-sent"
client = Client(sys.argv[1])

@init_class(client, "upper-sent", image="reg/aisetl-runtime:{python}",
            dependencies=["pyyaml>=5,<1000"], comm_type="hpull", NUM_WORKERS=1)
class UpperSent(ETLServer):
    def transform(self, data, path, etl_args):
        return data.upper() + SUFFIX

@init_class(client.etl("upper-sent-two"), image="reg/aisetl-runtime:{python}")
class Second(ETLServer):
    def transform(self, data, path, etl_args):
        return data[::-1]

print(UpperSent.__name__, Second.__name__)
"""


def test_sent_with_the_aistore_client_and_started_by_the_runtime(
    proxy: str, target: EmulatedTarget, workdir: Path
) -> None:
    python = reference_python()
    if python is None:
        pytest.skip("the aistore SDK is not available (make ref-venv)")
    done = subprocess.run(
        [python, "-c", CLIENT_SCRIPT, proxy],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["UpperSent", "Second"]
    (path, kind, body), (_, _, second) = _Proxy.received
    assert path == "/v1/etl" and kind.startswith("application/json")
    message = json.loads(body)
    assert message["name"] == "upper-sent" and json.loads(second)["name"] == "upper-sent-two"
    assert message["communication"] == "hpull://" and message["support_direct_put"] is True
    assert message["runtime"]["image"] == f"reg/aisetl-runtime:{HERE}"
    env = env_of(message)
    assert list(env)[:2] == ["ETL_CLASS_PAYLOAD", "PACKAGES"] and env["NUM_WORKERS"] == "1"
    # What the cluster would start: the runtime, with exactly the message's variables.
    etl = launch(target, "upper-sent", {**env, "PIP_NO_INDEX": "1"}, workdir)
    assert etl.transform(b"abc", comm="hpull") == b"ABC-sent"
    assert etl.transform(b"abc", comm="ws") == b"ABC-sent"  # a plain ETLServer runs on FastAPI
