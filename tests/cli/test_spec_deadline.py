"""The server's deadline in the spec: ``aisetl spec init`` writes ``AISETL_OBJ_TIMEOUT`` from
``obj_timeout`` (the pod is not told it), ``aisetl spec check`` warns when the two disagree."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisetl import spec
from aisetl.cli import main

BASE = (
    "name: upper-etl\nruntime:\n  image: x/y:1\n"
    "  env:\n  - {name: AISETL_OBJ_TIMEOUT, value: '%s'}\n"
)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "45"),
        (["--obj-timeout", "2m"], "120"),
        (["--obj-timeout", "1.5s"], "1.5"),
        (["--obj-timeout", "2m", "--env", "AISETL_OBJ_TIMEOUT=60"], "60"),
    ],
)
def test_init_writes_the_servers_deadline(
    tmp_path: Path, argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "etl_spec.yaml"
    assert main(["spec", "init", "upper-etl", "--image", "x/y:1", *argv, "-o", str(out)]) == 0
    (found,) = spec.load(out)
    assert found.environment()["AISETL_OBJ_TIMEOUT"] == expected
    capsys.readouterr()
    assert main(["spec", "check", str(out)]) == 0
    err = capsys.readouterr().err
    if expected == "60":  # written as asked, and pointed out
        assert "env AISETL_OBJ_TIMEOUT: is 60 but obj_timeout is 120 s" in err
    else:
        assert "AISETL_OBJ_TIMEOUT" not in err


@pytest.mark.parametrize(
    ("value", "obj_timeout", "warning"),
    [
        ("20", "45s", "is 20 but obj_timeout is 45 s: the server gives up first"),
        ("90", "45s", "is 90 but obj_timeout is 45 s: the server keeps working on objects"),
        ("0", "45s", "is 0 but obj_timeout is 45 s: the server has no deadline"),
        ("45", "45s", None),
        ("45.0", "45s", None),
    ],
)
def test_check_warns_when_they_disagree(
    tmp_path: Path, value: str, obj_timeout: str, warning: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = tmp_path / "etl_spec.yaml"
    path.write_text(BASE % value + f"obj_timeout: {obj_timeout}\n")
    assert main(["spec", "check", str(path)]) == 0
    err = capsys.readouterr().err
    if warning is None:
        assert "AISETL_OBJ_TIMEOUT" not in err
    else:
        assert warning in err and "set AISETL_OBJ_TIMEOUT=45" in err


def test_the_top_level_env_is_the_one_the_pod_keeps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "etl_spec.yaml"
    path.write_text(
        BASE % "45" + "obj_timeout: 45s\nenv:\n- {name: AISETL_OBJ_TIMEOUT, value: '5'}\n"
    )
    assert main(["spec", "check", str(path)]) == 0
    assert "is 5 but obj_timeout is 45 s" in capsys.readouterr().err


def test_a_value_the_server_cannot_read_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "etl_spec.yaml"
    path.write_text(BASE % "45s" + "obj_timeout: 45s\n")
    assert main(["spec", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "env AISETL_OBJ_TIMEOUT: '45s' is not a number of seconds" in err
    assert "the server would refuse to start (write 45, the obj_timeout)" in err
