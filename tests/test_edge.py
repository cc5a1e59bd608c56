"""Table tests of the request edge (:func:`aisetl.edge.admit`) and the delivery decisions."""

from __future__ import annotations

import logging

import pytest

from aisetl import FastAPIServer, FlaskServer, HTTPMultiThreadedServer
from aisetl.config import Settings
from aisetl.direct_put import Delivery, Retry
from aisetl.edge import (
    Admitted,
    Body,
    DownloadRequest,
    Headers,
    ObjectRequest,
    Refused,
    RequestHead,
    admit,
    content_length,
)
from aisetl.sources import Failure

SETTINGS = Settings(target_url="http://t:1/v1/etl/_object/e/secret", max_body_size=1000)


def head(
    method: str = "PUT",
    path: str = "/b/o",
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    length: int | None = None,
) -> RequestHead:
    return RequestHead(method, path, query, Headers(headers or []), length)


def test_headers_are_case_insensitive_and_the_first_copy_counts() -> None:
    headers = Headers([("Ais-Node-Url", "http://a:1"), ("ais-node-url", "http://b:2")])
    assert headers.get("AIS-NODE-URL") == "http://a:1"
    assert headers.get_all("ais-node-url") == ["http://a:1", "http://b:2"]
    assert headers.get("missing") is None
    raw = Headers.from_raw([(b"content-length", b"12")])
    assert raw.get("Content-Length") == "12"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12", 12), (b" 7 ", 7), ("-1", None), ("1e3", None), ("", None), (None, None), ("٣", None)],
)
def test_content_length(value: str | bytes | None, expected: int | None) -> None:
    assert content_length(value) == expected


ADMIT = [
    pytest.param(head("GET"), Body.NONE, id="hpull GET: no body"),
    pytest.param(head("PUT", length=10), Body.BYTES, id="hpush PUT: bytes"),
    pytest.param(head("PUT", query="etl_fqn=%252Fa"), Body.BYTES, id="FQN PUT"),
]


@pytest.mark.parametrize(("request_head", "body"), ADMIT)
def test_admitted(request_head: RequestHead, body: Body) -> None:
    decision = admit(request_head, SETTINGS, streaming=False)
    assert isinstance(decision, Admitted) and decision.body is body


def test_streaming_bodies_are_readers_unless_the_request_names_a_file() -> None:
    assert admit(head(length=5), SETTINGS, streaming=True).body is Body.STREAM  # type: ignore[union-attr]
    fqn = admit(head(query="etl_fqn=%252Fa"), SETTINGS, streaming=True)
    assert isinstance(fqn, Admitted) and fqn.body is Body.BYTES


def test_the_request_a_flow_gets() -> None:
    decision = admit(
        head(
            "GET",
            "/ais%2F@%23%2Fb%2Fa%20b",
            "etl_args=+hex+&latest-ver=true",
            [("Ais-Node-Url", "http://a:1,http://b:2"), ("Ais-Node-Url", "http://c:3")],
        ),
        SETTINGS,
        streaming=False,
    )
    assert isinstance(decision, Admitted)
    assert decision.request == ObjectRequest(
        path="ais/@#/b/a b",
        etl_args="hex",
        pipeline="http://a:1,http://b:2",
        from_target=True,
        latest_ver=True,
    )


REFUSED = [
    pytest.param(head("POST"), 405, "Method POST is not supported", True, id="405"),
    pytest.param(head("DELETE"), 405, "send PUT (hpush) or GET (hpull)", True, id="405 delete"),
    pytest.param(head(length=1001), 413, "1000-byte limit (AISETL_MAX_BODY_SIZE)", True, id="413"),
    pytest.param(
        head(path="/b/what", query=".txt?etl_fqn=%252Fx"),
        400,
        "probably 'b/what?.txt'",
        True,
        id="a name with '?' over hpush",
    ),
    pytest.param(
        head("GET", "/b/what", ".txt?etl_args=x"), 400, "holds a '?'", False, id="'?' over GET"
    ),
    pytest.param(
        head("POST", "/download", "object_to=o"),
        400,
        "needs the query parameter(s) original_url",
        True,
        id="download without a URL",
    ),
]


@pytest.mark.parametrize(("request_head", "status", "text", "close"), REFUSED)
def test_refused(request_head: RequestHead, status: int, text: str, close: bool) -> None:
    decision = admit(request_head, SETTINGS, streaming=False)
    assert isinstance(decision, Refused), decision
    assert decision.failure.status == status and text in decision.failure.message
    assert decision.close is close


def test_405_says_which_methods_are_allowed() -> None:
    decision = admit(head("PATCH"), SETTINGS, streaming=False)
    assert isinstance(decision, Refused) and decision.failure.headers == {"Allow": "GET, PUT"}


def test_download() -> None:
    decision = admit(
        head("POST", "/download", "original_url=http%3A%2F%2Fo%2Fa&object_to=d%2Fx&etl_args=%20a"),
        SETTINGS,
        streaming=True,
    )
    assert isinstance(decision, Admitted) and decision.body is Body.NONE
    assert decision.request == DownloadRequest("http://o/a", "d/x", "a")


# --- delivery decisions ------------------------------------------------------------------


class _Answer:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self._headers = {k.lower(): v for k, v in headers.items()}
        self.released = False

    def header(self, name: str) -> str | None:
        return self._headers.get(name.lower())

    def read(self, size: int | None = None) -> bytes:
        return b""

    def release(self, drain: bool = False) -> None:
        self.released = True


def delivery(replayable: bool, retries: int = 2, hop: str = "http://stage:8000") -> Delivery:
    settings = Settings(
        target_url="http://t:1/v1/etl/_object/e/secret",
        direct_put_retries=retries,
        retry_backoff=0.5,
    )
    return Delivery(settings, logging.getLogger("t"), hop, "", "b/o", "x", replayable)


def test_a_replayable_body_is_retried_with_backoff_then_fails_502() -> None:
    plan = delivery(replayable=True)
    assert plan.attempts == 3
    assert plan.after_transport_failure(0, "refused", body_started=True) == Retry(0.5)
    assert plan.after_transport_failure(1, "refused", body_started=True) == Retry(1.0)
    with pytest.raises(Failure) as info:
        plan.after_transport_failure(2, "refused", body_started=True)
    assert info.value.status == 502 and "after 3 attempt(s): refused" in info.value.message


def test_a_one_shot_body_asks_the_target_to_resend_once_it_was_read() -> None:
    plan = delivery(replayable=False)
    assert plan.after_transport_failure(0, "refused", body_started=False) == Retry(0.5)
    with pytest.raises(Failure) as info:
        plan.after_transport_failure(1, "reset", body_started=True)
    assert info.value.status == 503
    assert info.value.headers == {"Ais-Etl-Retry-Reason": "direct-put-transient"}
    with pytest.raises(Failure) as last:
        plan.after_transport_failure(2, "refused", body_started=False)
    assert last.value.status == 503  # unread, but no attempt left: the target resends


def test_a_downstream_resend_request() -> None:
    resend = {"Ais-Etl-Retry-Reason": "direct-put-transient"}
    assert delivery(True).after_answer(0, _Answer(503, resend)) == Retry(0.5)
    assert delivery(True).after_answer(2, _Answer(503, resend)) is None  # no attempt left
    assert delivery(False).after_answer(0, _Answer(503, resend)) is None  # passed upstream
    assert delivery(True).after_answer(0, _Answer(503, {})) is None  # a plain 503
    assert delivery(True).after_answer(0, _Answer(200, {})) is None


@pytest.mark.parametrize("hop", ["http://[::1", "http://h:99999", "ftp://h:1", "http://:80"])
def test_a_hop_that_is_not_a_usable_url(hop: str) -> None:
    with pytest.raises(Failure) as info:
        delivery(True, hop=hop)
    assert info.value.status == 400 and "is not a usable URL" in info.value.message


# --- settings a server sets on itself -----------------------------------------------------


class Tuned(HTTPMultiThreadedServer):
    def __init__(self) -> None:
        super().__init__()
        self.direct_put_retries = 7
        self.host_target = "http://elsewhere:1/"
        self.direct_fqn = True

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        return b""


def test_settings_set_in_init_take_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIS_TARGET_URL", "http://t:1")
    server = Tuned()
    assert server.settings.direct_put_retries == 7 and server.direct_put_retries == 7
    assert server.settings.target_url == "http://elsewhere:1" == server.host_target
    assert server.settings.direct_fqn and server.direct_fqn
    server.flow  # noqa: B018 - serving starts: the flow is built from these settings
    with pytest.raises(AttributeError, match="before the server serves its first object"):
        server.direct_put_retries = 1
    fresh = Tuned()
    with pytest.raises(ValueError, match="must not be negative"):
        fresh.direct_put_retries = -1


@pytest.mark.parametrize(
    ("cls", "comms"),
    [
        (HTTPMultiThreadedServer, ("hpush", "hpull")),
        (FlaskServer, ("hpush", "hpull")),
        (FastAPIServer, ("hpush", "hpull", "ws")),
    ],
)
def test_comm_types_are_a_capability_of_the_class(cls: type, comms: tuple[str, ...]) -> None:
    assert cls.comm_types == comms
