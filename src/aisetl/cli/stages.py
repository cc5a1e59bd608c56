"""Servers named on the command line: load and check them, find their spec, launch them."""

from __future__ import annotations

import errno
import inspect
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aisetl import spec as specs
from aisetl.cli.new import etl_name_for
from aisetl.loader import LoadError, bind_framework, framework_of, load_server_class
from aisetl.target import ETL, Cluster, ServerStartError
from aisetl.target.process import with_log_tail
from aisetl.testing import server_argv

SPEC_FILE = "etl_spec.yaml"


class StageError(Exception):
    """A server, its spec or its start is unusable; the message is one line for the user."""


@dataclass
class Stage:
    """One server of a run: how to start it and what its spec says."""

    server: str  # as given: path/to/server.py[:Class] or module:Class
    class_name: str
    framework: str
    spec: specs.EtlSpec | None = None
    spec_path: Path | None = None
    name: str = ""
    env: dict[str, str] = field(default_factory=dict)  # runtime.env
    top_env: dict[str, str] = field(default_factory=dict)  # the spec's top-level env


def find_spec(cls: type, server: str) -> Path | None:
    """``etl_spec.yaml`` beside the server's source file, if there is one."""
    try:
        source = inspect.getfile(cls)
    except (TypeError, OSError):
        target = server.partition(":")[0]
        source = target if target.endswith(".py") else ""
    if not source:
        return None
    candidate = Path(source).resolve().parent / SPEC_FILE
    return candidate if candidate.is_file() else None


def read_spec(path: Path) -> specs.EtlSpec:
    """The first ETL of a spec file; :class:`StageError` names the bad field."""
    try:
        found = specs.load(path)
    except OSError as exc:
        raise StageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except specs.SpecError as exc:
        where, why = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more; run `aisetl spec check {path}`)"
        raise StageError(
            f"invalid spec {path}: {where}: {why}{more if len(exc.problems) > 1 else ''}"
        ) from None
    return found[0]


def load_stage(
    server: str,
    framework: str | None,
    *,
    spec_path: Path | None = None,
    use_spec: bool = True,
) -> Stage:
    """Import ``server`` here (to report errors early), bind the framework, read its spec."""
    try:
        cls = load_server_class(server)
        bind_framework(cls, framework)
    except LoadError as exc:
        raise StageError(f"{server}: {exc}") from None
    chosen = framework or framework_of(cls) or "fastapi"
    path = spec_path if spec_path is not None else (find_spec(cls, server) if use_spec else None)
    found = read_spec(path) if path is not None else None
    for warning in found.warnings if found else ():
        print(f"warning: {_shown(path)}: {warning}", file=sys.stderr)
    return Stage(
        server=server,
        class_name=cls.__name__,
        framework=chosen,
        spec=found,
        spec_path=path,
        env={var.name: var.value for var in found.runtime_env} if found else {},
        top_env={var.name: var.value for var in found.env} if found else {},
    )


def _shown(path: Path | None) -> str:
    try:
        return str(Path(path or "").resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def name_stages(stages: list[Stage]) -> None:
    """Give every stage a unique, valid ETL name (its spec's name when it has one)."""
    used: set[str] = set()
    for stage in stages:
        base = stage.spec.name if stage.spec else etl_name_for(stage.class_name)
        name, n = base, 1
        while name in used:
            n += 1
            suffix = f"-{n}"
            name = base[: 32 - len(suffix)].rstrip("-") + suffix
        used.add(name)
        stage.name = name


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """Raise :class:`StageError` when ``port`` cannot be listened on."""
    if not 1 <= port <= 65535:
        raise StageError(f"--port {port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StageError(
                    f"port {port} is in use: pick another --port or leave it out"
                ) from None
            raise StageError(f"cannot listen on port {port}: {exc.strerror or exc}") from None


def launch(
    cluster: Cluster,
    stages: list[Stage],
    *,
    comm: str,
    workers: int | None = None,
    port: int | None = None,
    init_timeout: float,
    obj_timeout: float,
    extra_env: dict[str, str] | None = None,
) -> list[ETL]:
    """Start every stage as a real process and wait until each is healthy."""
    etls: list[ETL] = []
    for index, stage in enumerate(stages):
        argv = server_argv(stage.server, framework=stage.framework, workers=workers or 1)
        if workers is None:
            at = argv.index("--workers")
            del argv[at : at + 2]
        # --env, like a spec's top-level env, comes after the target's own variables (§2.1)
        top_env = {**stage.top_env, **(extra_env or {})}
        try:
            etl = cluster.launch(
                stage.name,
                argv,
                comm=comm if index == 0 else "hpush",
                env=stage.env,
                top_env=top_env,
                cwd=os.getcwd(),
                direct_put=True,
                init_timeout=init_timeout,
                obj_timeout=obj_timeout,
                per_target=False,
                port=port if index == 0 else None,
            )
        except ServerStartError as exc:
            log = "\n".join(exc.log.strip().splitlines()[-15:])
            message = re.sub(r"^server \[.*?\] ", "the server ", str(exc).split("\n", 1)[0])
            raise StageError(with_log_tail(f"{stage.server}: {message}", log)) from None
        except Exception as exc:
            raise StageError(f"{stage.server}: cannot start: {exc}") from None
        etls.append(etl)
    return etls
