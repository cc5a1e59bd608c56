"""``aisetl.spec`` and ``aisetl spec``: PROTOCOL.md §11 (TV-02, TV-03, the §11.4 table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisetl import spec
from aisetl.cli import main

MINIMAL = "name: upper-etl\nruntime:\n  image: x/y:1\n"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("md5", False),
        ("abcdef", True),
        ("a" * 32, True),
        ("a" * 33, False),
        ("my_etl1", False),
        ("My-etl", False),
        ("-abcdef", False),
        ("abcdef-", False),
        ("etl-md5-2", True),
    ],
)
def test_tv02_names(name: str, ok: bool) -> None:
    assert (spec.name_problem(name) is None) is ok


def test_tv03_defaults() -> None:
    (found,) = spec.loads(MINIMAL)
    assert found.communication == "hpush://" and found.comm == "hpush"
    assert found.init_timeout == 45.0 and found.obj_timeout == 10.0
    assert found.support_direct_put is False
    assert found.warnings == ()


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("communication: ws://\n", "communication: ws:// requires support_direct_put: true"),
        ("communication: hpull\n", "communication: unknown comm-type 'hpull'"),
        ("communication: HPUSH://\n", "communication: unknown comm-type 'HPUSH://'"),
        ("communication: io://\n", "communication: unknown comm-type 'io://'"),
        ("init_timeout: 45\n", "init_timeout: must be a Go duration string"),
        ("obj_timeout: 10 s\n", "obj_timeout: unknown unit ' s'"),
        ("obj_timeout: 5\u00a0min\n", "obj_timeout: unknown unit"),
        ("init_timeout: 1d\n", "init_timeout: unknown unit 'd'"),
        ("init_timeout: '-5m'\n", "init_timeout: '-5m' is negative"),
        ("support_direct_put: 'true'\n", "support_direct_put: must be true or false"),
        ("env:\n- name: A\n  value: 1\n", "env[0].value: must be a string"),
        ("env:\n- value: x\n", "env[0].name: is required"),
        ("env: {A: 1}\n", "env: must be a list"),
        ("resources: {gpu: 1}\n", "resources.gpu: unknown field"),
    ],
)
def test_invalid_fields_say_which_and_why(extra: str, problem: str) -> None:
    with pytest.raises(spec.SpecError) as info:
        spec.loads(MINIMAL + extra)
    assert problem in str(info.value)


def test_accepted_values() -> None:
    text = MINIMAL + (
        "communication: ws://\nsupport_direct_put: true\ninit_timeout: 1h30m\n"
        "obj_timeout: 1.5s\nargument: fqn\nresources: {limits: {cpu: 2}}\n"
        "runtime_extra: 1\nenv:\n- {name: B, value: '2'}\n"
    )
    (found,) = spec.loads(text.replace("runtime_extra", "extra_field"))
    assert found.communication == "ws://"
    assert found.init_timeout == 5400 and found.obj_timeout == 1.5
    assert any("argument" in w and "obsolete" in w for w in found.warnings)
    assert any("extra_field" in w for w in found.warnings)
    assert found.environment() == {"B": "2"}


def test_missing_and_deprecated() -> None:
    with pytest.raises(spec.SpecError, match=r"name: is required.*runtime.image: is required"):
        spec.loads("communication: hpush://\n")
    with pytest.raises(spec.SpecError, match="Pod-spec form is deprecated"):
        spec.loads("name: upper-etl\nspec: abc\n")
    with pytest.raises(spec.SpecError, match="empty"):
        spec.loads("")
    with pytest.raises(spec.SpecError, match="not valid YAML"):
        spec.loads("name: [unclosed\n")


def test_several_documents_are_numbered() -> None:
    with pytest.raises(spec.SpecError, match="document 2: name"):
        spec.loads(MINIMAL + "---\nname: BAD\nruntime: {image: a}\n")
    assert len(spec.loads(MINIMAL + "---\n" + MINIMAL.replace("upper", "lower"))) == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("45s", 45),
        ("5m", 300),
        ("1h30m", 5400),
        ("300ms", 0.3),
        (".5s", 0.5),
        ("1.5h", 5400),
        ("2us", 2e-6),
        ("+3s", 3),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert spec.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1.2.3s", "--1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        spec.parse_duration(text)


def test_render_round_trips() -> None:
    text = spec.render("md5-etl", "me/md5:1", comm="ws", env={"A": "1"})
    (found,) = spec.loads(text)
    assert found.communication == "ws://" and found.support_direct_put
    assert found.environment() == {"A": "1", "AISETL_OBJ_TIMEOUT": "45"}  # the server's deadline
    assert "ais etl init --spec" in text
    with pytest.raises(spec.SpecError, match="requires support_direct_put"):
        spec.render("md5-etl", "me/md5:1", comm="ws", support_direct_put=False)


def test_cli_init_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "etl_spec.yaml"
    assert (
        main(
            [
                "spec",
                "init",
                "md5-etl",
                "--image",
                "me/md5:1",
                "--comm",
                "hpull",
                "--env",
                "X=1",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert main(["spec", "check", str(out)]) == 0
    assert "ok: md5-etl (me/md5:1, hpull://" in capsys.readouterr().out
    assert main(["spec", "init", "md5-etl", "--image", "x", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["spec", "init", "Bad_Name", "--image", "x", "-o", "-"], "name: 'Bad_Name'"),
        (
            [
                "spec",
                "init",
                "abcdef",
                "--image",
                "x",
                "--comm",
                "ws",
                "--no-direct-put",
                "-o",
                "-",
            ],
            "requires support_direct_put",
        ),
        (
            ["spec", "init", "abcdef", "--image", "x", "--obj-timeout", "10", "-o", "-"],
            "obj_timeout: missing unit",
        ),
        (["spec", "init", "abcdef", "--image", "x", "--env", "NOVALUE", "-o", "-"], "NAME=VALUE"),
        (["spec", "check", "/no/such/file.yaml"], "cannot read"),
    ],
)
def test_cli_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_check_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "etl_spec.yaml"
    bad.write_text("name: X\nruntime: {image: a}\ncommunication: ws\nargument: fqn\n")
    assert main(["spec", "check", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert any(": name: " in line for line in err)
    assert any(": communication: unknown comm-type 'ws'" in line for line in err)
    good = tmp_path / "ok.yaml"
    good.write_text(MINIMAL + "argument: fqn\n")
    assert main(["spec", "check", str(good)]) == 0
    assert "warning" in capsys.readouterr().err


def test_cli_init_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "init", "abcdef", "--image", "x", "-o", "-"]) == 0
    assert "name: abcdef" in capsys.readouterr().out
