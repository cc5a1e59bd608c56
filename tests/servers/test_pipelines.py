"""Direct put to a target hop and to ETL hops; pipelines that mix all three servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from aisetl.target import Cluster

from ..transformers import upper
from .conftest import REPO, TEST_ENV, payload, serve_argv

#: name -> (spec, framework, the transform as a function)
STAGES: dict[str, tuple[str, str, Callable[[bytes], bytes]]] = {
    "fastapi-upper": ("tests.transformers:Upper", "fastapi", upper),
    "fastapi-stream": ("tests.transformers:UpperStream", "fastapi", upper),
    "flask-upper": ("tests.transformers:Upper", "flask", upper),
    "flask-stream": ("tests.transformers:UpperStream", "flask", upper),
    "flask-suffix": ("tests.transformers:Suffix", "flask", lambda data: data + b"!"),
    "http-upper": ("tests.transformers:Upper", "http", upper),
    "http-stream": ("tests.transformers:UpperStream", "http", upper),
    "http-suffix": ("tests.transformers:Suffix", "http", lambda data: data + b"!"),
}
SIZES = [0, 1, 1024, 4099, 1024 * 1024]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two targets; every destination object is owned by the other target."""
    with Cluster(tmp_path_factory.mktemp("cluster"), targets=2, placement="remote") as c:
        for name, (spec, framework, _) in STAGES.items():
            c.launch(
                name, serve_argv(spec, framework),
                comm="ws" if framework == "fastapi" else "hpush",
                env=TEST_ENV, cwd=str(REPO), init_timeout=60,
            )  # fmt: skip
        yield c


def compose(*names: str) -> Callable[[bytes], bytes]:
    def apply(data: bytes) -> bytes:
        for name in names:
            data = STAGES[name][2](data)
        return data

    return apply


def fill(cluster: Cluster, bucket: str) -> dict[str, bytes]:
    objects = {f"dir/obj {size}.bin": payload(size, seed=3) for size in SIZES}
    cluster.bucket(bucket)
    for name, data in objects.items():
        cluster.put(bucket, name, data)
    return objects


@pytest.mark.parametrize(
    "etl",
    ["fastapi-upper", "fastapi-stream", "flask-upper", "flask-stream", "http-upper", "http-stream"],
)
@pytest.mark.parametrize("comm", ["hpush", "hpull"])
@pytest.mark.parametrize("fqn", [False, True], ids=["body", "fqn"])
def test_direct_put_to_the_destination_target(
    cluster: Cluster, etl: str, comm: str, fqn: bool
) -> None:
    src, dst = f"dp-{etl}-{comm}-{fqn}", f"dp-out-{etl}-{comm}-{fqn}"
    objects = fill(cluster, src)
    report = cluster.run_job(etl, src, dst, comm=comm, fqn=fqn, workers=4, timeout=120)
    assert report.errors == [], report.errors
    for name, data in objects.items():
        assert cluster.get(dst, name) == upper(data), name
    target_puts = [p for t in cluster.targets for p in t.puts if p.object.bucket == dst]
    assert len(target_puts) == len(objects)  # every object arrived by direct put
    assert all(p.owt == "3" and p.uuid for p in target_puts)


@pytest.mark.parametrize(
    "stages",
    [
        ("fastapi-upper", "flask-suffix", "http-stream"),
        ("http-stream", "fastapi-stream", "flask-suffix"),
        ("flask-stream", "http-suffix", "fastapi-upper"),
    ],
    ids="->".join,
)
@pytest.mark.parametrize("comm", ["hpush", "hpull", "ws"])
def test_three_stage_inline_pipelines(cluster: Cluster, stages: tuple[str, ...], comm: str) -> None:
    first, *rest = stages
    if comm == "ws" and not first.startswith("fastapi"):
        pytest.skip("ws is served by the FastAPI server")
    target = cluster.targets[0]
    bucket = target.bucket("inline")
    for size in SIZES:
        data = payload(size, seed=5)
        name = f"p/{'-'.join(stages)}/{comm}/{size}"
        bucket.put(name, data)
        result = target.transform(
            first, bucket, name, comm=comm, pipeline=rest, fqn=True, etl_args="a b"
        )
        assert result.error is None, (size, result.error)
        assert result.content == compose(*stages)(data), size


@pytest.mark.parametrize(
    "stages",
    [
        ("fastapi-stream", "flask-upper", "http-suffix"),
        ("http-upper", "flask-stream", "fastapi-upper"),
    ],
    ids="->".join,
)
@pytest.mark.parametrize("comm", ["hpush", "hpull", "ws"])
def test_three_stage_offline_pipelines_to_a_remote_target(
    cluster: Cluster, stages: tuple[str, ...], comm: str
) -> None:
    first, *rest = stages
    if comm == "ws" and not first.startswith("fastapi"):
        pytest.skip("ws is served by the FastAPI server")
    src, dst = f"pl-{first}-{comm}", f"pl-out-{first}-{comm}"
    objects = fill(cluster, src)
    report = cluster.run_job(first, src, dst, pipeline=rest, comm=comm, workers=4, timeout=120)
    assert report.errors == [], report.errors
    for name, data in objects.items():
        assert cluster.get(dst, name) == compose(*stages)(data), name


def test_empty_result_of_a_last_stage_is_stored_not_lost(cluster: Cluster) -> None:
    """An aisetl stage marks an empty result, so the stage before it does not answer 204."""
    target = cluster.targets[0]
    bucket = target.bucket("empty")
    bucket.put("e", b"abc")
    result = target.transform(
        "fastapi-upper", bucket, "e", pipeline=["http-upper"], etl_args="empty"
    )
    assert result.error is None, result.error
    assert result.content == b"" and not result.delivered


@pytest.mark.parametrize("stage", ["fastapi-upper", "flask-suffix", "http-suffix"])
@pytest.mark.parametrize("name", ["health", "ws"])
def test_objects_named_like_the_servers_own_routes(cluster: Cluster, stage: str, name: str) -> None:
    """A ws-driven object hops on as ``PUT /<object name>``: ``PUT /health`` is an object."""
    target = cluster.targets[0]
    bucket = target.bucket("route-names")
    data = payload(4099, seed=9)
    bucket.put(name, data)
    result = target.transform("fastapi-stream", bucket, name, comm="ws", pipeline=[stage])
    assert result.error is None, result.error
    assert result.content == compose("fastapi-stream", stage)(data)
