"""Every example folder is complete and consistent: its spec is valid, and its Dockerfile's command
starts the server, with the spec's environment and ``NUM_WORKERS`` worker processes."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aisetl.loader import FRAMEWORKS
from aisetl.spec import EtlSpec, load
from aisetl.target import PortLease

HERE = Path(__file__).parent
EXAMPLES = sorted(p.parent.name for p in HERE.glob("*/server.py"))
WORKERS = 2
BASES = {class_name: name for name, (_, class_name) in FRAMEWORKS.items()}


@dataclass
class Example:
    """What the files of one example folder say."""

    folder: Path
    spec: EtlSpec
    command: list[str]  # the Dockerfile's CMD
    env: dict[str, str]  # the Dockerfile's ENV
    classes: dict[str, list[str]]  # classes of server.py -> names of their bases


def read_example(name: str) -> Example:
    folder = HERE / name
    docker = (folder / "Dockerfile").read_text()
    cmd = [line for line in docker.splitlines() if line.startswith("CMD ")]
    env: dict[str, str] = {}
    for line in docker.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line[4:].split())  # type: ignore[misc]
    tree = ast.parse((folder / "server.py").read_text())
    classes = {
        node.name: [ast.unparse(base) for base in node.bases]
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }
    (spec,) = load(folder / "etl_spec.yaml")
    return Example(folder, spec, json.loads(cmd[-1][4:]) if cmd else [], env, classes)


@pytest.mark.parametrize("name", EXAMPLES)
def test_folder_is_complete(name: str) -> None:
    folder = HERE / name
    for file in ("server.py", "Dockerfile", "etl_spec.yaml", "README.md", f"test_{name}.py"):
        assert (folder / file).is_file(), f"{name} has no {file}"
    readme = (folder / "README.md").read_text()
    for command in ("aisetl get", "pytest examples/", "ais etl init --spec", "docker build"):
        assert command in readme, f"{name}/README.md does not show `{command}`"


@pytest.mark.parametrize("name", EXAMPLES)
def test_spec_and_dockerfile_agree(name: str) -> None:
    example = read_example(name)
    spec = example.spec
    assert spec.support_direct_put and spec.image
    # the one warning a spec may carry: ws cannot report failures (PROTOCOL.md §7.4)
    assert all("lost silently" in warning for warning in spec.warnings), spec.warnings
    assert bool(spec.warnings) == (spec.communication == "ws://")
    assert spec.init_timeout >= 60 and spec.obj_timeout >= 30
    program, verb, target, flag, framework = example.command
    assert (program, verb, flag) == ("aisetl", "serve", "--server")
    module, class_name = target.split(":")
    assert module == "server" and class_name in example.classes
    assert BASES[example.classes[class_name][0]] == framework
    assert example.env.get("NUM_WORKERS")
    source = (example.folder / "server.py").read_text()
    for var in spec.environment():  # every variable the spec sets is one the server documents
        assert var == "ETL_DIRECT_FQN" or f"``{var}``" in source, f"{name}: {var} is unknown"


@dataclass
class Container:
    """The Dockerfile's command, run in the example's folder as the image would run it."""

    name: str
    process: subprocess.Popen[bytes]
    port: int

    def health(self) -> bytes | None:
        try:
            url = f"http://127.0.0.1:{self.port}/health"
            with urllib.request.urlopen(url, timeout=2) as reply:
                body: bytes = reply.read()
                return body
        except OSError:
            return None

    def log(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.read().decode(errors="replace")[-2000:]


@pytest.fixture(scope="module")
def containers() -> Iterator[dict[str, Container]]:
    """Start every example's container command at once (they start in parallel), stop them all."""
    started: dict[str, Container] = {}
    leases: list[PortLease] = []  # held: the examples start at once and must not share a port
    try:
        for name in EXAMPLES:
            example = read_example(name)
            env = {**os.environ, **example.env, **example.spec.environment()}
            env |= {"NUM_WORKERS": str(WORKERS), "AISETL_GRACE_PERIOD": "1"}
            env["AIS_TARGET_URL"] = "http://127.0.0.1:9/v1/etl/_object/example/ABCDEFGHIJ"
            leases.append(PortLease())
            port = leases[-1].port
            argv = [sys.executable, "-m", "aisetl", *example.command[1:]]
            process = subprocess.Popen(
                [*argv, "--host", "127.0.0.1", "--port", str(port)],
                cwd=example.folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            started[name] = Container(name, process, port)
        yield started
    finally:
        for lease in leases:
            lease.release()
        for container in started.values():
            if container.process.poll() is None:
                container.process.send_signal(signal.SIGTERM)
        for container in started.values():
            try:
                container.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                container.process.kill()
                container.process.wait(timeout=5)
            if container.process.stdout is not None:
                container.process.stdout.close()


@pytest.mark.parametrize("name", EXAMPLES)
def test_container_command_serves(containers: dict[str, Container], name: str) -> None:
    container = containers[name]
    deadline = time.monotonic() + 30
    while (body := container.health()) is None:
        if container.process.poll() is not None or time.monotonic() > deadline:
            container.process.kill()
            pytest.fail(f"{name} did not become healthy:\n{container.log()}")
        time.sleep(0.1)
    assert body == b"Running"
    pid = container.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():  # NUM_WORKERS worker processes serve the port
        # the first worker may answer before the last one is forked
        while len(children.read_text().split()) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(children.read_text().split()) >= WORKERS
