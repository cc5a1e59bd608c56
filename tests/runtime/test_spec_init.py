"""``aisetl spec init --runtime IMAGE SERVER``: the init_class message as ``etl_spec.yaml``, which
starts the class in the runtime exactly as a cluster would start it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisetl import spec
from aisetl.cli import main
from aisetl.cli.spec import name_for_class
from aisetl.payload import python_version
from aisetl.target import EmulatedTarget

from .conftest import launch

SERVER = """
from aisetl import HTTPMultiThreadedServer

GREETING = b"hi "


class WordUpperServer(HTTPMultiThreadedServer):
    def transform(self, data, path, etl_args):
        return GREETING + (open(data, "rb").read() if isinstance(data, str) else data).upper()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "server.py").write_text(SERVER)
    return folder


@pytest.mark.parametrize(
    ("cls", "name"),
    [("WordUpperServer", "word-upper"), ("MD5Server", "md5-etl"), ("Server", "server"),
     ("HTTPEcho", "httpecho")],
)  # fmt: skip
def test_names_from_classes(cls: str, name: str) -> None:
    assert name_for_class(cls) == name
    assert spec.name_problem(name) is None


def test_the_written_spec_starts_in_the_runtime(
    project: Path, target: EmulatedTarget, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project / "etl_spec.yaml"
    argv = ["spec", "init", "--runtime", "reg/aisetl-runtime:{python}", f"{project}/server.py",
            "--package", "pyyaml>=5,<1000", "--direct-fqn", "--comm", "hpull",
            "--env", "NUM_WORKERS=2", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    (found,) = spec.load(out)
    assert found.name == "word-upper" and found.communication == "hpull://"
    assert found.image == f"reg/aisetl-runtime:{python_version()}"
    env = found.environment()
    assert list(env) == [
        "ETL_CLASS_PAYLOAD",
        "PACKAGES",
        "NUM_WORKERS",
        "ETL_DIRECT_FQN",
        "AISETL_PAYLOAD_PYTHON",
        "AISETL_PAYLOAD_AISETL",
        "AISETL_OBJ_TIMEOUT",
    ]
    # The module was pickled by value: the runtime runs elsewhere, without server.py.
    etl = launch(target, "word-upper", {**env, "PIP_NO_INDEX": "1"}, workdir)
    assert etl.transform(b"abc", comm="hpull") == b"hi ABC"
    assert etl.transform(b"abc", comm="hpush", fqn=True) == b"hi ABC"


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--runtime", "reg/rt:3.0"], "runs Python 3.0 (its tag)"),
        (["--runtime", "reg/rt:{python}", "--comm", "ws"], "cannot serve ws (it serves"),
        (["--runtime", "reg/rt:{python}", "--name", "Bad_Name"], "name: 'Bad_Name' may contain"),
        (["--image", "reg/own:1", "--package", "x"], "--package goes with --runtime"),
    ],
)
def test_refused(
    project: Path, extra: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"{project}/server.py" if "--runtime" in extra else "word-upper"
    assert main(["spec", "init", target, *extra, "-o", str(project / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aisetl spec: error: ") and problem in err
    assert not (project / "x.yaml").exists()


def test_a_missing_server_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["spec", "init", "--runtime", "r/rt:1", f"{tmp_path}/nope.py", "-o", "-"]) == 2
    assert "no such file" in capsys.readouterr().err
