"""Every server x communication type x buffered/streaming x payload size, byte-exact."""

from __future__ import annotations

import pytest

from aisetl.target import EmulatedTarget

from ..transformers import upper
from .conftest import FRAMEWORKS, Launcher, payload

SIZES = [0, 1, 1024, 4099, 1024 * 1024, 8 * 1024 * 1024]
MODES = {"buffered": "tests.transformers:Upper", "streaming": "tests.transformers:UpperStream"}


def comms(framework: str) -> list[str]:
    return ["hpush", "hpull", "ws"] if framework == "fastapi" else ["hpush", "hpull"]


CASES = [
    pytest.param(fw, mode, comm, fqn, id=f"{fw}-{mode}-{comm}-{'fqn' if fqn else 'body'}")
    for fw in FRAMEWORKS
    for mode in MODES
    for comm in comms(fw)
    for fqn in (False, True)
]


@pytest.mark.parametrize(("framework", "mode", "comm", "fqn"), CASES)
def test_every_size_round_trips(
    target: EmulatedTarget, launch: Launcher, framework: str, mode: str, comm: str, fqn: bool
) -> None:
    etl = launch(f"{framework}-{mode}", MODES[mode], framework)
    bucket = target.bucket("matrix")
    for size in SIZES:
        data = payload(size)
        name = f"{framework}/{mode}/{comm}/{fqn}/obj-{size}.bin"
        bucket.put(name, data)
        result = target.transform(etl, bucket, name, comm=comm, fqn=fqn)
        assert result.error is None, (size, result.error, etl.logs()[-2000:])
        assert result.content == upper(data), f"{size} bytes: content differs"


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("fqn", [False, True], ids=["body", "fqn"])
def test_direct_fqn_hands_a_path_or_bytes(
    target: EmulatedTarget, launch: Launcher, framework: str, fqn: bool
) -> None:
    """ETL_DIRECT_FQN: transform() gets the file path when the target passed one."""
    describe = launch(
        f"{framework}-direct-describe", "tests.transformers:Describe", framework,
        env={"ETL_DIRECT_FQN": "true"},
    )  # fmt: skip
    upper_etl = launch(
        f"{framework}-direct-upper", "tests.transformers:Upper", framework,
        env={"ETL_DIRECT_FQN": "true"},
    )  # fmt: skip
    bucket = target.bucket("direct")
    for comm in comms(framework):
        name = f"{framework}/{comm}/{fqn}/a b.txt"
        data = payload(4099)
        bucket.put(name, data)
        seen = target.transform(describe, bucket, name, comm=comm, fqn=fqn)
        assert seen.error is None, seen.error
        assert seen.content is not None
        assert seen.content.split(b"|")[0] == (b"str" if fqn else b"bytes")
        result = target.transform(upper_etl, bucket, name, comm=comm, fqn=fqn)
        assert result.content == upper(data)


@pytest.mark.parametrize("mode", list(MODES))
def test_ws_with_uvicorns_own_protocol(target: EmulatedTarget, launch: Launcher, mode: str) -> None:
    """AISETL_WS_FRAMES=false: whole messages, as plain uvicorn delivers them."""
    etl = launch(
        f"fastapi-{mode}-plain-ws", MODES[mode], "fastapi", env={"AISETL_WS_FRAMES": "false"}
    )
    bucket = target.bucket("plainws")
    for size in SIZES:
        data = payload(size)
        name = f"{mode}/obj-{size}.bin"
        bucket.put(name, data)
        for fqn in (False, True):
            result = target.ws(etl, bucket, name, fqn=fqn)
            assert result.content == upper(data), (size, fqn, result.error)
