"""Mistakes in a server's code or spec are reported when it is loaded, with the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aisetl.cli import main

MISTAKES = """
from aisetl import ETLServer, FastAPIServer


class NoSuper(ETLServer):
    def __init__(self):
        self.model = "loaded"

    def transform(self, data, path, etl_args):
        return data


class NoSuperOnFastAPI(FastAPIServer):
    def __init__(self, host="0.0.0.0", port=8000):
        self.model = "loaded"

    def transform(self, data, path, etl_args):
        return data


class OneArgument(ETLServer):
    def transform(self, data):
        return data


class StreamTwoArguments(ETLServer):
    def transform_stream(self, reader, path):
        yield reader.read()


class Upper(ETLServer):
    def __init__(self):
        super().__init__()
        self.suffix = b""

    def transform(self, data, path, etl_args, *rest):
        return data.upper() + self.suffix
"""


@pytest.fixture
def server_file(tmp_path: Path) -> Path:
    path = tmp_path / "mistakes.py"
    path.write_text(MISTAKES)
    (tmp_path / "obj.txt").write_bytes(b"abc")
    return path


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        ("NoSuper", "NoSuper.__init__ does not call super().__init__(): add `super().__init__()`"),
        ("NoSuperOnFastAPI", "`super().__init__(host, port)`"),
        ("OneArgument", "OneArgument.transform(self, data) cannot be called as "
         "transform(data, path, etl_args): write `def transform(self, data, path, etl_args):`"),
        ("StreamTwoArguments", "write `def transform_stream(self, reader, path, etl_args):`"),
        ("Uper", "has no attribute 'Uper': its server classes are NoSuper, NoSuperOnFastAPI, "
         "OneArgument, StreamTwoArguments, Upper; did you mean 'Upper'?"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("verb", ["get", "run"])
def test_mistakes_are_reported_at_load_time_with_the_fix(
    server_file: Path, cls: str, message: str, verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = server_file.parent
    argv = [f"{server_file}:{cls}", str(folder / "obj.txt")]
    if verb == "run":
        argv = [argv[0], "--src", str(folder), "--dst", str(folder.parent / "out")]
    assert main([verb, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("error:") == 1


def test_serve_reports_the_mistake_too(server_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aisetl", "serve", f"{server_file}:NoSuper", "--port", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "NoSuper.__init__ does not call super().__init__()" in done.stderr


def test_a_correct_server_still_loads(
    server_file: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    obj = server_file.parent / "obj.txt"
    assert main(["get", f"{server_file}:Upper", str(obj), "--server", "http"]) == 0
    assert capsysbinary.readouterr().out == b"ABC"


def test_spec_typos_suggest_the_right_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "etl"
    folder.mkdir()
    (folder / "server.py").write_text(MISTAKES)
    (folder / "etl_spec.yaml").write_text(
        "name: upper-etl\nruntime: {image: x, comand: [python]}\ncomunication: hpull://\n"
        "obj_timout: 5s\nenv:\n- {name: A, valeu: b}\n"
    )
    assert main(["spec", "check", str(folder / "etl_spec.yaml")]) == 0
    err = capsys.readouterr().err
    typos = {"comand": "command", "valeu": "value", "comunication": "communication",
             "obj_timout": "obj_timeout"}  # fmt: skip
    for typo, right in typos.items():
        assert f"{typo!r}" in err or f"{typo}:" in err, (typo, err)
        assert f"did you mean {right!r}?" in err, (typo, err)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_bytes(b"a")
    argv = ["run", f"{folder / 'server.py'}:Upper", "--src", str(tmp_path / "src"), "--dst",
            str(tmp_path / "out"), "--server", "http", "-q"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "did you mean 'communication'?" in err
