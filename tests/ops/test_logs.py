"""Logs an operator can search: JSON lines from every layer, each failed object once, no secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from aisetl.target import ETL, Cluster

from ..servers.conftest import FRAMEWORKS, REPO, TEST_ENV, serve_argv
from .conftest import settled, wait_for

STEERED = "tests.ops.transformers:Steered"
LEAKY = "tests.ops.transformers:Leaky"


def comms(framework: str) -> tuple[str, ...]:
    return ("hpush", "hpull", "ws") if framework == "fastapi" else ("hpush", "hpull")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("logs"), time_scale=0.01) as c:
        yield c


def launch(cluster: Cluster, name: str, spec: str, framework: str, **env: str) -> ETL:
    return cluster.launch(
        name,
        [*serve_argv(spec, framework), "--workers", "2"],
        comm="ws" if framework == "fastapi" else "hpush",
        env={**TEST_ENV, **env},
        cwd=str(REPO),
        init_timeout=60,
    )


def send_mix(cluster: Cluster, etl: ETL, bucket_name: str) -> dict[str, str]:
    """Objects of every outcome over every comm type: {object name: etl_args}."""
    target = cluster.targets[0]
    bucket = target.bucket(bucket_name)
    sent = {}
    for comm in comms(etl.name.split("-")[0]):
        for args in ("", "", "reject", "fail"):
            name = f"{comm}-{args or 'ok'}-{len(sent)}.bin"
            bucket.put(name, b"some bytes")
            target.transform(etl, bucket, name, comm=comm, etl_args=args)
            sent[f"{bucket_name}/{name}" if comm != "ws" else name] = args
    settled(etl)  # every object ended (and was logged)
    return sent


def lines_naming(log: str, name: str) -> list[str]:
    return [line for line in log.splitlines() if name in line]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_json_lines_from_every_layer_and_each_failure_once(
    cluster: Cluster, framework: str
) -> None:
    etl = launch(cluster, f"{framework}-json", STEERED, framework, AISETL_LOG_FORMAT="json")
    sent = send_mix(cluster, etl, f"json-{framework}")
    log = etl.logs()
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line
    loggers = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "gunicorn.error"} & loggers or framework == "http", loggers
    assert len({entry["pid"] for entry in entries}) >= 2  # the supervisor and the workers
    for name, args in sent.items():
        named = [entry for entry in entries if name in json.dumps(entry)]
        if not args:
            assert named == [], named  # a success is not logged
            continue
        assert len(named) == 1, named  # a failure is logged once
        (entry,) = named
        status = 415 if args == "reject" else 500
        assert entry["object"].endswith(name)  # hpull: the uname (provider and namespace first)
        assert entry["status"] == status
        assert entry["comm"] in ("hpush", "hpull", "ws")
        # over ws every failure is an error: the target cannot see it
        serious = status == 500 or entry["comm"] == "ws"
        assert entry["level"] == ("error" if serious else "warning")
        assert "asked to" in entry["error"]
        if entry["comm"] != "ws":
            assert entry["duration"] >= 0 and entry["bytes_in"] == len(b"some bytes")
        if args == "fail":  # an unexpected exception: its traceback is in the same line
            assert "ValueError: asked to fail" in entry["exception"]
        else:
            assert "exception" not in entry


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_text_by_default_failures_once_and_successes_with_the_access_log(
    cluster: Cluster, framework: str
) -> None:
    quiet = launch(cluster, f"{framework}-text", STEERED, framework)
    loud = launch(cluster, f"{framework}-access", STEERED, framework, AISETL_ACCESS_LOG="true")
    for etl in (quiet, loud):
        sent = send_mix(cluster, etl, etl.name)
        log = etl.logs()
        assert " - WARNING - " in log and not log.lstrip().startswith("{")
        for name, args in sent.items():
            named = lines_naming(log, name)
            if args:
                assert len(named) == 1, named
                serious = args == "fail" or name.startswith("ws-")
                assert (" - ERROR - " if serious else " - WARNING - ") in named[0]
            elif etl is loud:
                assert len(named) == 1 and " - INFO - " in named[0] and " 200 in " in named[0]
            else:
                assert named == []


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_target_url_secret_is_redacted(
    cluster: Cluster, framework: str, log_format: str
) -> None:
    etl = launch(cluster, f"{framework}-leaky-{log_format}", LEAKY, framework,
                 AISETL_LOG_FORMAT=log_format)  # fmt: skip
    target = cluster.targets[0]
    bucket = target.bucket("leaky")
    bucket.put("o", b"abc")
    assert target.hpush(etl, bucket, "o").content == b"ABC"
    failed = target.hpush(etl, bucket, "o", etl_args="fail")
    assert failed.error is not None and failed.error.ecode == 500
    settled(etl)
    # it did log the URL (each line is written by its worker a moment after its answer)
    wait_for(lambda: "talking to" in etl.logs() and "could not reach" in etl.logs(),
             what="both lines that quote the URL in the log")  # fmt: skip
    log = etl.logs()
    assert etl.secret not in log
    assert "***" in log


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AISETL_LOG_FORMAT", "xml", "AISETL_LOG_FORMAT='xml': use 'text' (the default) or 'json'"),
        ("AISETL_METRICS", "maybe", "AISETL_METRICS='maybe' is not a boolean"),
        ("AISETL_ACCESS_LOG", "2", "AISETL_ACCESS_LOG='2' is not a boolean"),
        ("AISETL_OBJ_TIMEOUT", "soon", "AISETL_OBJ_TIMEOUT='soon' is not a number of seconds"),
        ("AISETL_MAX_INFLIGHT_BYTES", "lots", "AISETL_MAX_INFLIGHT_BYTES='lots' is not a size"),
    ],
)
def test_a_bad_setting_stops_the_server_with_its_name(
    variable: str, value: str, message: str
) -> None:
    env = {**os.environ, **TEST_ENV, "AIS_TARGET_URL": "http://127.0.0.1:1", variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "aisetl", "serve", STEERED, "--port", "0"],
        env=env,
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert message in done.stderr, done.stderr
