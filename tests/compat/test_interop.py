"""Interoperability: pipelines whose stages mix reference-SDK servers and aisetl servers."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator

import pytest

from aisetl.target import Cluster

from ..servers.conftest import REPO, TEST_ENV, payload, serve_argv
from .conftest import REFERENCE_STYLE

Stage = tuple[Callable[[str], list[str]], str, Callable[[bytes], bytes]]


def _ours(spec: str, framework: str) -> Callable[[str], list[str]]:
    return lambda _py: serve_argv(spec, framework)


STAGES: dict[str, Stage] = {
    "ref-fastapi-upper": (
        lambda py: [
            py,
            "-m",
            "uvicorn",
            "shell_out:app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ],
        "ref",
        lambda d: d.upper(),
    ),
    "ref-flask-md5": (
        lambda py: [py, "-m", "gunicorn", "md5:app", "-b", "127.0.0.1:{port}", "-k", "gthread"],
        "ref",
        lambda d: hashlib.md5(d).hexdigest().encode(),
    ),
    "ref-http-stats": (
        lambda py: [py, "mime.py", "{port}"],
        "ref",
        lambda d: json.dumps({"size": len(d), "args": ""}).encode(),
    ),
    "ours-http-suffix": (_ours("tests.transformers:Suffix", "http"), "ours", lambda d: d + b"!"),
    "ours-fastapi-stream": (
        _ours("tests.transformers:UpperStream", "fastapi"),
        "ours",
        lambda d: d.upper(),
    ),
    "ours-flask-upper": (_ours("tests.transformers:Upper", "flask"), "ours", lambda d: d.upper()),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, ref_python: str) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("interop"), targets=2, placement="remote") as c:
        for name, (argv, sdk, _) in STAGES.items():
            c.launch(
                name, argv(ref_python if sdk == "ref" else sys.executable),
                env={**TEST_ENV, "FROM_SET": "a-z", "TO_SET": "A-Z"},
                cwd=str(REFERENCE_STYLE if sdk == "ref" else REPO), init_timeout=60,
            )  # fmt: skip
        yield c


PIPELINES = [
    ("ref-fastapi-upper", "ours-http-suffix"),
    ("ours-fastapi-stream", "ref-flask-md5"),
    ("ours-flask-upper", "ref-http-stats"),
    ("ref-flask-md5", "ours-fastapi-stream"),
    ("ours-http-suffix", "ref-fastapi-upper", "ours-flask-upper"),
]


@pytest.mark.parametrize("stages", PIPELINES, ids="->".join)
@pytest.mark.parametrize("fqn", [False, True], ids=["body", "fqn"])
def test_mixed_pipeline_lands_byte_exact_on_the_target(
    cluster: Cluster, stages: tuple[str, ...], fqn: bool
) -> None:
    first, *rest = stages
    src, dst = f"i-{'-'.join(stages)}-{fqn}"[:60], f"o-{'-'.join(stages)}-{fqn}"[:60]
    objects = {f"d/obj {size}.bin": payload(size, seed=13) for size in (0, 1, 1024, 200_000)}
    cluster.bucket(src)
    for name, data in objects.items():
        cluster.put(src, name, data)
    report = cluster.run_job(
        first, src, dst, pipeline=rest, comm="hpush", fqn=fqn, workers=4, timeout=120
    )
    assert report.errors == [], report.errors
    for name, data in objects.items():
        expected = data
        for stage in stages:
            expected = STAGES[stage][2](expected)
        assert cluster.get(dst, name) == expected, name
