"""The README's table of what a transform receives is what the servers really receive.

Every row is checked against real servers (all three frameworks) fed by the emulated target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisetl.testing import LocalETL, serve

REPO = Path(__file__).resolve().parents[2]
SHOW = str(Path(__file__).parent / "servers.py") + ":Show"
OBJECT = "sub/a b%20c.txt"
ARGS = "w=1&h=2"
DATA = b"the object"


def table(name: str) -> list[list[str]]:
    """The rows of the README table between ``<!-- name -->`` markers, as cell texts."""
    text = (REPO / "README.md").read_text()
    block = text[text.index(f"<!-- {name} -->") : text.index(f"<!-- /{name} -->")]
    rows = [line for line in block.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def literal(cell: str) -> str:
    """The first `code` span of a cell."""
    found = re.search(r"`([^`]*)`", cell)
    assert found, cell
    return found[1]


@pytest.fixture(scope="module", params=["fastapi", "flask", "http"])
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[bool, LocalETL]]]:
    """The Show server of one framework, with ETL_DIRECT_FQN off and on."""
    with (
        serve(SHOW, framework=request.param) as off,
        serve(SHOW, framework=request.param, direct_fqn=True) as on,
    ):
        yield request.param, {False: off, True: on}


def received(etl: LocalETL, comm: str, fqn: bool, name: str, args: str) -> dict[str, str]:
    result = etl.send(DATA, comm=comm, fqn=fqn, path=f"photos/{name}", etl_args=args)
    assert result.ok and result.content is not None, result.error
    answer: dict[str, str] = json.loads(result.content)
    return answer


def test_the_io_table(servers: tuple[str, dict[bool, LocalETL]]) -> None:
    framework, etls = servers
    rows = table("io-table")
    assert len(rows) == 9
    for comm, sends, direct_fqn, data, path, etl_args in rows:
        if comm == "ws" and framework != "fastapi":
            continue
        fqn = sends == "its path"
        for on in {"either": [False, True], "off": [False], "on": [True]}[direct_fqn]:
            got = received(etls[on], comm, fqn, OBJECT, ARGS)
            where = (framework, comm, sends, on)
            assert got["data"] == literal(data), where
            if got["data"] == "bytes":
                assert got["value"] == DATA.decode(), where
            else:
                tail = re.findall(r"`([^`]*)`", data)[1].lstrip("…")
                assert got["value"].endswith(tail) and Path(got["value"]).is_file(), where
            assert got["path"] == literal(path), where
            assert got["etl_args"] == literal(etl_args), where


def test_the_names_the_target_mangles(servers: tuple[str, dict[bool, LocalETL]]) -> None:
    _, etls = servers
    rows = table("mangled-table")
    assert len(rows) == 4
    for name_cell, path, etl_args, as_bytes, as_path in rows:
        name = literal(name_cell)
        if path.startswith("none"):
            result = etls[False].send(DATA, comm="hpush", path=f"photos/{name}", etl_args=ARGS)
            assert result.error is not None and literal(path) in result.error
            continue
        for on in (False, True):
            for fqn, expected in ((False, as_bytes), (True, as_path)):
                for args in ("", ARGS):
                    if expected.startswith("refused") or ("refused" in expected and args):
                        refused = etls[on].send(
                            DATA, comm="hpush", fqn=fqn, path=f"photos/{name}", etl_args=args
                        )
                        assert refused.status == 400 and refused.error is not None, refused
                        assert f"probably 'photos/{name}'" in refused.error, refused.error
                        continue
                    got = received(etls[on], "hpush", fqn, name, args)
                    assert got["path"] == literal(path), (name, got)
                    lost = etl_args.startswith("empty")
                    assert got["etl_args"] == ("" if lost else args), (name, got)
                    empty = expected == "empty" or (
                        expected.startswith("empty without") and not args
                    )
                    if empty:
                        assert got["value"] == "", (name, fqn, args, got)
                    elif got["data"] == "bytes":
                        assert got["value"] == DATA.decode(), (name, fqn, args, got)
                    else:
                        assert got["value"].endswith(name) and Path(got["value"]).is_file()
