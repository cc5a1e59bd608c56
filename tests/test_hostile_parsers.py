"""Property-based walk of every parser a request meets, with hostile input (hypothesis).

Paths, queries (``etl_fqn``, ``etl_args``), the ``Ais-Node-Url`` hop list and ws control
messages get NUL bytes, control characters, undecodable bytes (surrogate escapes), lone
surrogates, malformed percent escapes and URLs, deep JSON. Nothing may raise past the one
error handling: the edge answers or admits, the flow answers 4xx in the one error format, the
ws state machine answers every task. No network: hops are refused by ``AISETL_HOP_ALLOW``
and the FQN files are the test's own.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisetl.config import Settings
from aisetl.direct_put import Delivery
from aisetl.edge import Admitted, Headers, ObjectRequest, Refused, RequestHead, admit
from aisetl.flow import Flow
from aisetl.loader import bind_framework
from aisetl.protocol import (
    decode_path,
    mangled_name,
    parse_pipeline,
    parse_query,
    parse_ws_control,
    quote_stage_path,
    quote_uname,
    sanitize_fqn,
)
from aisetl.reply import Reply
from aisetl.sources import Failure
from aisetl.ws_protocol import AnswerNow, Close, Dropped, Oversized, RunTask, Send, WsTasks
from tests.transformers import Upper

LOG = logging.getLogger("test-hostile")
PROFILE = settings(
    max_examples=150,
    derandomize=True,  # the same examples on every run: a failure is reproducible
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- strategies ---------------------------------------------------------------------------

NASTY_CHARS = st.sampled_from(
    ["\x00", "\r", "\n", "\t", " ", "%", "%00", "%ff", "%2", "%zz", "?", "#", "&", "=", "+",
     ",", "/", "..", "@", "[", "]", ":", "\udc80", "\udcff", "\ud800", "\x7f", "é", "\u2028"]
)  # fmt: skip
TEXT = st.lists(st.one_of(NASTY_CHARS, st.text(max_size=4)), max_size=12).map("".join)
PORTS = st.sampled_from(["", ":", ":1", ":99999", ":-1", ":notaport", ":8080", ":0"])
HOSTS = st.sampled_from(["h", "127.0.0.1", "[::1", "[::1]", "", "a b", "\x00", "[zz]"])
SCHEMES = st.sampled_from(["http://", "https://", "ftp://", "", "http:/", "ws://"])
HOP = st.one_of(
    st.builds(
        lambda s, h, p, t: s + h + p + t, SCHEMES, HOSTS, PORTS, st.one_of(st.just(""), TEXT)
    ),
    TEXT,
)
HOP_LIST = st.lists(HOP, max_size=3).map(",".join)
PIPELINE = st.one_of(st.none(), HOP_LIST)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)
CONTROL_DICT = st.fixed_dictionaries(
    {},
    optional={
        "path": st.one_of(TEXT, JSON_VALUES),
        "fqn": st.one_of(TEXT, JSON_VALUES),
        "etl_args": st.one_of(TEXT, JSON_VALUES),
        "pipeline": st.one_of(HOP_LIST, JSON_VALUES),
    },
)
RAW_BYTES = st.binary(max_size=64)


def _encode(value: object) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


WS_MESSAGE = st.one_of(
    CONTROL_DICT.map(_encode),
    JSON_VALUES.map(_encode),
    RAW_BYTES,
    TEXT.map(lambda text: text.encode("utf-8", "replace").decode()),  # text frames are UTF-8
    st.integers(1, 3000).map(lambda depth: b"[" * depth),  # deep nesting
    st.integers(1, 3000).map(lambda depth: b'{"path":' * depth),
    st.just(b"1" * 5000),  # a number past Python's digit limit
)


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    os.environ.setdefault("AIS_TARGET_URL", "http://127.0.0.1:1")
    server = bind_framework(Upper, "http")()
    server.settings = Settings(
        target_url="http://127.0.0.1:1",  # nothing listens: no request may get this far
        hop_allow=("allowed.invalid",),
        direct_put_retries=0,
        retry_backoff=0.0,
    )
    folder = tmp_path_factory.mktemp("objects")
    (folder / "o").write_bytes(b"abc")
    return Flow(server)


# --- the request edge -----------------------------------------------------------------------


@PROFILE
@given(
    method=st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE", "get", "PUT\x00", ""]),
    raw_path=TEXT.map(lambda text: "/" + text),
    raw_query=TEXT,
    headers=st.lists(st.tuples(st.sampled_from(["Ais-Node-Url", "X", "Content-Length"]), TEXT)),
    length=st.one_of(st.none(), st.integers(-5, 2**70)),
    chunked=st.booleans(),
)
def test_the_edge_admits_or_refuses_with_a_4xx(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    length: int | None,
    chunked: bool,
) -> None:
    head = RequestHead(method, raw_path, raw_query, Headers(headers), length, chunked)
    decision = admit(head, Settings(target_url="http://t:1", max_body_size=1000), streaming=False)
    assert isinstance(decision, Admitted | Refused)
    if isinstance(decision, Refused):
        assert 400 <= decision.failure.status < 500, decision
        assert decision.failure.message


@PROFILE
@given(path=TEXT, query=TEXT, fqn=TEXT)
def test_pure_protocol_functions_take_any_text(path: str, query: str, fqn: str) -> None:
    decoded = decode_path("/" + path)
    assert isinstance(decoded, str)
    params = parse_query(query)
    assert all(isinstance(key, str) and isinstance(v, str) for key, v in params.items())
    assert mangled_name(decoded, query) is None or "?" in query
    for quote in (quote_uname, quote_stage_path):
        try:
            quoted = quote(decoded)
        except UnicodeEncodeError:  # only a lone surrogate (never from the wire) cannot be sent
            assert any(0xD800 <= ord(char) <= 0xDBFF for char in decoded) or any(
                0xDC00 <= ord(char) <= 0xDC7F or 0xDD00 <= ord(char) <= 0xDFFF for char in decoded
            )
        else:
            assert quoted.isascii()
    assert sanitize_fqn(fqn).startswith("/")


@PROFILE
@given(header=st.one_of(st.none(), HOP_LIST), allow=st.sampled_from([(), ("h",)]))
def test_a_hop_list_is_parsed_or_refused_with_a_4xx(
    header: str | None, allow: tuple[str, ...]
) -> None:
    settings_ = Settings(target_url="http://t:1/v1/etl/_object/e/s", hop_allow=allow)
    try:
        hop, rest = parse_pipeline(header)
    except ValueError as exc:
        assert "hop list" in str(exc)
        return
    if not hop:
        return
    try:
        delivery = Delivery(settings_, LOG, hop, rest, "b/o", "", replayable=True)
    except Failure as failure:
        assert failure.status in (400, 403), failure.message
        assert hop in failure.message or repr(hop) in failure.message
    else:
        assert delivery.url.startswith(("http://", "https://"))


# --- the whole flow, in process ---------------------------------------------------------------


@PROFILE
@given(path=TEXT, etl_args=TEXT, fqn=TEXT, pipeline=PIPELINE, from_target=st.just(False))
def test_the_flow_answers_hostile_requests_with_4xx_or_a_result(
    flow: Flow, path: str, etl_args: str, fqn: str, pipeline: str | None, from_target: bool
) -> None:
    request = ObjectRequest(path=path, etl_args=etl_args.strip(), fqn=fqn, pipeline=pipeline)
    reply = flow.handle(request, b"abc")
    assert isinstance(reply, Reply)
    assert reply.status < 500 or reply.status == 502, (reply.status, reply.body)
    if reply.status >= 400:
        assert reply.headers["Content-Type"].startswith("text/plain")
        assert reply.body.decode("utf-8").endswith(")") or path == ""


def test_the_flow_refuses_a_fqn_with_a_lone_surrogate(flow: Flow, tmp_path: Path) -> None:
    """A ws control message can carry any JSON string, even one no file name can hold."""
    reply = flow.handle(ObjectRequest(path="b/o", fqn="/tmp/\ud800x"), None)
    assert reply.status == 400, reply.body
    assert b"cannot name a file" in reply.body and b"(object: b/o)" in reply.body


# --- the ws control message and the task state machine -----------------------------------------


@PROFILE
@given(message=WS_MESSAGE)
def test_a_control_message_parses_or_raises_value_error(message: bytes | str) -> None:
    try:
        control = parse_ws_control(message)
    except ValueError as exc:
        assert str(exc)
    else:
        assert set(control) == {"path", "fqn", "etl_args", "pipeline"}
        assert all(isinstance(value, str) for value in control.values())


@PROFILE
@given(
    messages=st.lists(st.one_of(WS_MESSAGE, st.integers(65537, 10**9).map(Oversized)), max_size=8),
    errors=st.sampled_from(["text", "close", "binary"]),
)
def test_the_ws_state_machine_answers_every_task(
    messages: list[bytes | str | Oversized], errors: str
) -> None:
    tasks = WsTasks(LOG, errors=errors)
    for message in messages:
        if isinstance(message, Oversized) and tasks.reading.value != "probe":
            continue  # the pump reads whole messages outside PROBE
        for event in tasks.receive(message):
            if isinstance(event, AnswerNow):
                assert isinstance(event.answer, Send | Close)
            elif isinstance(event, RunTask):
                failed = Reply(400, {}, b"no (object: x)")
                assert isinstance(tasks.answer(failed, event.request), Send | Close)
            else:
                assert isinstance(event, Dropped)


def test_undecodable_etl_args_go_on_to_the_next_hop_as_sent() -> None:
    settings_ = Settings(target_url="http://t:1")
    delivery = Delivery(settings_, LOG, "http://h:1?x=%FE", "", "b/o", "\udcff", replayable=True)
    assert delivery.url == "http://h:1/b/o?x=%FE&etl_args=%FF"


def test_a_malformed_hop_is_400_even_with_an_allow_list() -> None:
    settings_ = Settings(target_url="http://t:1", hop_allow=("h",))
    with pytest.raises(Failure) as caught:
        Delivery(settings_, LOG, "http://[zz]", "", "b/o", "", replayable=True)
    assert caught.value.status == 400 and "is not a usable URL" in caught.value.message


@PROFILE
@given(path=st.text(alphabet="%0123456789abcdefABCDEFgz/+ ?#~\x00\x7f", max_size=40))
def test_an_ascii_path_decodes_as_unquote_decodes_it(path: str) -> None:
    """decode_path's one-step form for ASCII (what a target sends) is unquote's result."""
    assert decode_path("/" + path) == unquote("/" + path, errors="surrogateescape").lstrip("/")
