"""One hop fault per communication type, in every server: every object lands byte-exact or
fails visibly (LOST = 0). The whole matrix runs in ``make reliability``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aisetl.target import Cluster
from reliability.faults import run_cell

from .conftest import FRAMEWORKS, REPO, TEST_ENV, serve_argv

OBJECTS = 3
#: comm type -> (fault on the destination, how many objects must land)
CELLS = {
    "hpush": ("reset-mid-body", 0),
    "fqn": ("fail-2-then-ok", OBJECTS),
    "hpull": ("503", 0),
    "stream": ("reset", 0),
    "ws": ("500", 0),
    "ws-stream": ("refuse", None),  # a refused hop may come back within the retries
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(
        tmp_path_factory.mktemp("faults"), targets=2, placement="remote", time_scale=0.001,
        ws_timeout=60,
    ) as c:  # fmt: skip
        env = {**TEST_ENV, "AISETL_HOP_READ_TIMEOUT": "1", "AISETL_WS_ERRORS": "binary"}
        for framework in FRAMEWORKS:
            for spec in ("Upper", "UpperStream"):
                argv = serve_argv(f"tests.transformers:{spec}", framework)
                c.launch(
                    f"{framework}-{spec.lower()}", argv,
                    comm="ws" if framework == "fastapi" else "hpush", env=env, cwd=str(REPO),
                    init_timeout=60, per_target=False,
                )  # fmt: skip
        yield c


@pytest.mark.parametrize(
    ("framework", "comm"),
    [(f, c) for f in FRAMEWORKS for c in CELLS if f == "fastapi" or not c.startswith("ws")],
)
def test_every_object_is_accounted_for(cluster: Cluster, framework: str, comm: str) -> None:
    fault, landing = CELLS[comm]
    tally = run_cell(cluster, framework, comm, fault, OBJECTS)
    assert tally.lost == [], tally
    assert tally.landed + tally.failed == OBJECTS, tally
    if landing is not None:
        assert tally.landed == landing, tally
