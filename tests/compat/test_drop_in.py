"""Drop-in compatibility: transformers written for the reference SDK run on aisetl after one
change (the import prefix), and answer exactly as they do on the reference servers."""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aisetl.target import EmulatedTarget

from ..servers.conftest import payload
from .conftest import REFERENCE_STYLE

WS_FLAGS = ["--ws-max-size", "17179869184", "--ws-ping-interval", "0", "--ws-ping-timeout", "86400"]


@dataclass(frozen=True)
class Case:
    """A reference-style transformer: how each SDK starts it and what it must produce."""

    module: str
    cls: str
    comms: tuple[str, ...]
    expected: Callable[[bytes], bytes]
    reference_argv: Callable[[str], list[str]]
    reference_ws: bool = True


def _uvicorn(module: str) -> Callable[[str], list[str]]:
    return lambda py: [
        py,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        *WS_FLAGS,
    ]


CASES = {
    "shell_out": Case(
        "shell_out", "ShellOut", ("hpush", "hpull", "ws"), lambda d: d.upper(),
        _uvicorn("shell_out"),
    ),
    "md5": Case(
        "md5", "Md5", ("hpush", "hpull"), lambda d: hashlib.md5(d).hexdigest().encode(),
        lambda py: [py, "-m", "gunicorn", "md5:app", "-b", "127.0.0.1:{port}", "-k", "gthread"],
    ),
    "streaming": Case(
        "streaming", "Crc", ("hpush", "hpull", "ws"), lambda d: d + b"%08x" % zlib.crc32(d),
        _uvicorn("streaming"), reference_ws=False,  # the reference refuses streaming over ws
    ),
    "text_result": Case(
        "text_result", "Sha256Text", ("hpush", "hpull"),
        lambda d: hashlib.sha256(d).hexdigest().encode(), _uvicorn("text_result"),
    ),
    "mime": Case(
        "mime", "Stats", ("hpush", "hpull"),
        lambda d: json.dumps({"size": len(d), "args": ""}).encode(),
        lambda py: [py, "mime.py", "{port}"],
    ),
}  # fmt: skip


def etl_name(sdk: str, case: str) -> str:
    """A valid ETL name (6-32 of a-z, 0-9, -) for one SDK's server of a case."""
    return f"{sdk}-{case.replace('_', '-')}"


ENV = {"FROM_SET": "a-z", "TO_SET": "A-Z"}


@pytest.fixture(scope="module")
def target(
    tmp_path_factory: pytest.TempPathFactory, ref_python: str, migrated: Path
) -> Iterator[EmulatedTarget]:
    with EmulatedTarget(tmp_path_factory.mktemp("dropin"), faithful=False) as tgt:
        for name, case in CASES.items():
            comm = "ws" if "ws" in case.comms else "hpull"
            tgt.launch(
                etl_name("ours", name),
                [sys.executable, "-m", "aisetl", "serve", f"{migrated / case.module}.py:{case.cls}",
                 "--host", "127.0.0.1", "--port", "{port}"],
                comm=comm, env=ENV, cwd=str(migrated), init_timeout=60,
            )  # fmt: skip
            tgt.launch(
                etl_name("reference", name), case.reference_argv(ref_python),
                comm=comm if case.reference_ws else "hpull", env=ENV, cwd=str(REFERENCE_STYLE),
                init_timeout=60,
            )  # fmt: skip
        yield tgt


def test_migration_changes_only_the_import_prefix(migrated: Path) -> None:
    for source in REFERENCE_STYLE.glob("*.py"):
        before = source.read_text().splitlines()
        after = (migrated / source.name).read_text().splitlines()
        changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
        assert changed and all(
            b.replace("aistore.sdk.etl.webserver", "aisetl") == a for b, a in changed
        )


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("fqn", [False, True], ids=["body", "fqn"])
def test_same_answers_as_the_reference(target: EmulatedTarget, name: str, fqn: bool) -> None:
    case = CASES[name]
    bucket = target.bucket("dropin")
    for size in (0, 1, 1024, 300_000):
        data = payload(size, seed=21)
        object_name = f"{name}/{fqn}/obj {size}.bin"
        bucket.put(object_name, data)
        for comm in case.comms:
            ours = target.transform(etl_name("ours", name), bucket, object_name, comm=comm, fqn=fqn)
            assert ours.error is None, (comm, size, ours.error)
            assert ours.content == case.expected(data), (comm, size)
            if comm == "ws" and not case.reference_ws:
                continue
            reference = target.transform(
                etl_name("reference", name), bucket, object_name, comm=comm, fqn=fqn
            )
            assert reference.content == ours.content, (comm, size)


def test_mime_type_reaches_the_client(target: EmulatedTarget) -> None:
    """An inline hpull GET is redirected to the server, whose headers reach the client."""
    bucket = target.bucket("mime")
    bucket.put("o.bin", b"12345")
    for etl in ("ours-mime", "reference-mime"):
        response = target.get("mime", "o.bin", etl=etl)
        assert response.status == 200, response.body
        content_type = {k.lower(): v for k, v in response.headers}["content-type"]
        assert content_type == "application/json"
        assert json.loads(response.body) == {"size": 5, "args": ""}
