"""Table tests of the ws task state machine (:mod:`aisetl.ws_protocol`): messages in, events out."""

from __future__ import annotations

import json
import logging

import pytest

from aisetl.edge import ObjectRequest
from aisetl.reply import Reply
from aisetl.ws_protocol import (
    CLOSE_FAILED,
    CONTROL_MAX,
    LOST_IN_CLUSTER,
    AnswerNow,
    Close,
    Dropped,
    Oversized,
    Reading,
    RunTask,
    Send,
    StreamTask,
    WsTasks,
)

LOG = logging.getLogger("test-ws")


def control(**keys: str) -> bytes:
    return json.dumps(keys).encode()


def request(path: str, **keys: str) -> ObjectRequest:
    return ObjectRequest(
        path=path,
        etl_args=keys.get("etl_args", ""),
        fqn=keys.get("fqn", ""),
        pipeline=keys.get("pipeline", ""),
    )


# Each row: the messages fed in order, and the events each one produced.
TABLE = [
    pytest.param(
        [control(path="a", fqn="%2Fa")],
        [[RunTask(request("a", fqn="%2Fa"), None)]],
        id="fqn task: no payload",
    ),
    pytest.param(
        [control(path="a"), b"bytes"],
        [[], [RunTask(request("a"), b"bytes")]],
        id="payload follows the control message",
    ),
    pytest.param(
        [control(path="a"), "text payload"],
        [[], [RunTask(request("a"), b"text payload")]],
        id="a text payload is taken as UTF-8 bytes",
    ),
    pytest.param(
        [control(path="a", etl_args="  hex ", pipeline="http://h:1"), b""],
        [[], [RunTask(request("a", etl_args="hex", pipeline="http://h:1"), b"")]],
        id="etl_args stripped, empty payload kept",
    ),
    pytest.param(
        [b"not json", control(path="b"), b"B"],
        [["answer"], [], [RunTask(request("b"), b"B")]],
        id="invalid control, then a control message: the next task",
    ),
    pytest.param(
        [b"not json", b"the lost payload", control(path="b", fqn="%2Fb")],
        [["answer"], [Dropped(16)], [RunTask(request("b", fqn="%2Fb"), None)]],
        id="invalid control, then its payload: dropped",
    ),
    pytest.param(
        [b"[1]", Oversized(CONTROL_MAX + 1), control(path="c", fqn="x")],
        [["answer"], [Dropped(CONTROL_MAX + 1)], [RunTask(request("c", fqn="x"), None)]],
        id="invalid control, then a large message: dropped unread",
    ),
]


@pytest.mark.parametrize(("messages", "expected"), TABLE)
def test_transitions(messages: list[bytes | str | Oversized], expected: list[list[object]]) -> None:
    tasks = WsTasks(LOG)
    for message, events in zip(messages, expected, strict=True):
        got = tasks.receive(message)
        if events == ["answer"]:
            assert len(got) == 1 and isinstance(got[0], AnswerNow), got
            answer = got[0].answer
            assert isinstance(answer, Send) and isinstance(answer.data, str)
            assert answer.data.startswith("Invalid WebSocket control message")
            assert answer.data.endswith("(object: (unknown))")
            assert tasks.reading is Reading.PROBE
        else:
            assert got == events
    assert tasks.reading is Reading.WHOLE


def test_a_json_object_without_keys_is_a_task_with_a_payload() -> None:
    tasks = WsTasks(LOG)
    assert tasks.receive(b"{}") == []  # an object with no keys: a task for path "", payload next
    assert tasks.receive(b"x") == [RunTask(request(""), b"x")]


def test_streaming_tasks_are_handed_to_the_pump() -> None:
    tasks = WsTasks(LOG, streams=lambda req: req.path.endswith(".big"))
    assert tasks.receive(control(path="a.big")) == [StreamTask(request("a.big"))]
    assert tasks.reading is Reading.WHOLE  # the pump reads the payload itself
    assert tasks.receive(control(path="a.small")) == []


ANSWERS = [
    (Reply(200, {}, b"result"), Send(b"result")),
    (Reply(200, {}, b""), Send(b"")),
    (Reply(204, {"Ais-Direct-Put-Length": "42"}), Send("42")),
    (Reply(204, {}), Send("0")),
    (
        Reply(500, {}, b"Transform failed: boom (object: a)"),
        Send("Transform failed: boom (object: a)"),
    ),
]


@pytest.mark.parametrize(("reply", "answer"), ANSWERS)
def test_answers(reply: Reply, answer: Send) -> None:
    assert WsTasks(LOG).answer(reply, request("a")) == answer


def test_a_failure_is_logged_with_what_a_cluster_would_do(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="test-ws"):
        WsTasks(LOG).answer(Reply(415, {}, b"wrong input (object: a)"), request("a"))
    assert "ws task for 'a' failed (415): wrong input (object: a)" in caplog.text
    assert LOST_IN_CLUSTER in caplog.text


def test_close_on_error() -> None:
    tasks = WsTasks(LOG, errors="close")
    assert tasks.answer(Reply(500, {}, b"boom"), request("a")) == Close(CLOSE_FAILED)
    assert tasks.answer(Reply(200, {}, b"ok"), request("a")) == Send(b"ok")
    assert isinstance(tasks.receive(b"not json")[0].answer, Close)  # type: ignore[union-attr]


def test_a_streamed_failure() -> None:
    tasks = WsTasks(LOG)
    failed = Reply(500, {}, b"failed after the first part")
    assert tasks.stream_failed(failed, request("a"), started=False) == Send(
        "failed after the first part"
    )
    assert tasks.stream_failed(failed, request("a"), started=True) == Close(CLOSE_FAILED)


DESTINATION = "http://127.0.0.1:9/v1/objects/dst/o?uuid=j"
STAGE = "http://127.0.0.1:8"

# AISETL_WS_ERRORS=binary: (hop list of the failed task, its answer)
BINARY = [
    pytest.param(DESTINATION, Send(b""), id="result owned by another target: empty binary"),
    pytest.param(f"{STAGE},{DESTINATION}", Send(b""), id="stages, then another target"),
    pytest.param(STAGE, Send("boom"), id="last hop a stage (local writer): text"),
    pytest.param(f"{DESTINATION},{STAGE}", Send("boom"), id="ends at a stage: text"),
    pytest.param("", Send("boom"), id="no hops (local writer): text"),
    pytest.param("http://[::1", Send("boom"), id="not a URL: text"),
]


@pytest.mark.parametrize(("pipeline", "answer"), BINARY)
def test_binary_errors_only_where_a_target_has_no_writer(pipeline: str, answer: Send) -> None:
    tasks = WsTasks(LOG, errors="binary")
    failed = Reply(500, {}, b"boom")
    assert tasks.answer(failed, request("a", pipeline=pipeline)) == answer
    assert tasks.stream_failed(failed, request("a", pipeline=pipeline), started=False) == answer
    assert tasks.stream_failed(failed, request("a", pipeline=pipeline), started=True) == Close(
        CLOSE_FAILED
    )


def test_binary_errors_keep_successes_and_bad_control_messages_as_they_were(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = WsTasks(LOG, errors="binary")
    delivered = Reply(204, {"Ais-Direct-Put-Length": "3"})
    assert tasks.answer(delivered, request("a", pipeline=DESTINATION)) == Send("3")
    answer = tasks.receive(b"not json")[0].answer  # type: ignore[union-attr]
    assert isinstance(answer, Send) and isinstance(answer.data, str)
    with caplog.at_level(logging.ERROR, logger="test-ws"):
        tasks.answer(Reply(502, {}, b"hop down"), request("a", pipeline=DESTINATION))
    assert "answering with an empty binary message (AISETL_WS_ERRORS=binary)" in caplog.text
