"""Table tests of the pure protocol functions against the test vectors of PROTOCOL.md §18."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from aisetl.flow import ObjectRequest
from aisetl.protocol import (
    InvalidPipelineError,
    compose_direct_put_url,
    decode_path,
    fqn_allowed,
    interpret_hop_response,
    is_health_check,
    is_target_hop,
    names_an_object,
    parse_bool,
    parse_pipeline,
    parse_ws_control,
    quote_stage_path,
    quote_uname,
    retry_delay,
    sanitize_fqn,
    upstream_url,
)
from aisetl.target.wire import (
    fqn_query_value,
    go_path_escape,
    go_query_encode,
    target_uname,
    ws_control_message,
)

A = "http://10.0.0.1:51081/v1/etl/_object/md5-etl/AbCdEfGhIj"
DST = "http://10.0.0.2:51081/ais%2F@%23%2Fdst%2Fnew%20name.txt?owt=3&uuid=XyZ123"


# --- TV-07 .. TV-10: what a server derives from a target's request ---------------------------


def test_tv07_fqn_mode_request_is_parsed() -> None:
    query = (
        "etl_args=%7B%22size%22%3A256%7D&etl_fqn=%252Fais%252Fmp1%252F%40ais%252Fimages"
        "%252F%2525ob%252Fcat%25201.jpg"
    )
    request = ObjectRequest.from_http("PUT", "/images/cat%201.jpg", query, None)
    assert request.etl_args == '{"size":256}'
    assert request.fqn == "%2Fais%2Fmp1%2F@ais%2Fimages%2F%25ob%2Fcat%201.jpg"
    assert sanitize_fqn(request.fqn) == "/ais/mp1/@ais/images/%ob/cat 1.jpg"
    assert request.path == "images/cat 1.jpg"
    assert not request.from_target


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("etl_args=a+b%2Cc", "a b,c"),
        ("etl_args=a%2Bb+c", "a+b c"),
        ("etl_args=++x++", "x"),  # stripped, as the reference servers strip it (D10)
        ("", ""),
    ],
)
def test_tv09_etl_args_are_form_decoded_and_stripped(query: str, expected: str) -> None:
    assert ObjectRequest.from_http("PUT", "/b/o", query, None).etl_args == expected


def test_tv10_non_ascii_and_ampersand_in_names() -> None:
    request = ObjectRequest.from_http(
        "PUT",
        "/b/dir/%C3%BC%20&%20v.txt",
        "etl_fqn=%252Fais%252Fmp1%252F%40ais%252Fb%252F%2525ob%252Fdir%252F%25C3%25BC%2520%26%2520v.txt",
        None,
    )
    assert request.path == "b/dir/ü & v.txt"
    assert sanitize_fqn(request.fqn) == "/ais/mp1/@ais/b/%ob/dir/ü & v.txt"


def test_hpull_request_path_is_the_decoded_uname() -> None:
    request = ObjectRequest.from_http("GET", "/ais%2F@%23%2Fimages%2Fdir%2Fcat%201.jpg", "", None)
    assert request.path == "ais/@#/images/dir/cat 1.jpg"
    assert request.from_target
    assert quote_uname(request.path) == "ais%2F%40%23%2Fimages%2Fdir%2Fcat%201.jpg".replace(
        "%40", "@"
    )
    assert upstream_url(A, request.path) == A + "/ais%2F@%23%2Fimages%2Fdir%2Fcat%201.jpg"


def test_first_query_value_wins_like_go() -> None:
    assert ObjectRequest.from_http("PUT", "/b/o", "etl_args=1&etl_args=2", None).etl_args == "1"


def test_non_utf8_path_bytes_round_trip() -> None:
    path = decode_path("/b/%FF%FEx")
    assert quote_stage_path(path) == "b/%FF%FEx"


# --- TV-20: FQN sanitization -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "%2Fais%2Fmp1%2F@ais%2Fimages%2F%25ob%2Fcat%201.jpg",
            "/ais/mp1/@ais/images/%ob/cat 1.jpg",
        ),
        ("../../etc/passwd", "/etc/passwd"),
        ("/ais/mp1/../../etc/passwd", "/etc/passwd"),
        ("%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/etc/passwd"),
        ("//ais//mp1/./x", "/ais/mp1/x"),
        ("relative/path", "/relative/path"),
        ("%252Fais", "/%2Fais"),
        ("/a/b/", "/a/b"),
        ("a+b", "/a+b"),
        ("  /a/b  ", "/a/b"),
    ],
)
def test_tv20_fqn_sanitization(value: str, expected: str) -> None:
    assert sanitize_fqn(value) == expected


@pytest.mark.parametrize(
    ("path", "allow", "allowed"),
    [
        ("/etc/passwd", (), True),
        ("/etc/passwd", ("ais-layout",), False),
        ("/ais/mp1/@ais/images/%ob/cat 1.jpg", ("ais-layout",), True),
        ("/ais/mp1/@ais/#ns/images/%ob/x", ("ais-layout",), True),
        ("/ais/mp1/images/%ob/x", ("ais-layout",), False),
        ("/data/mp1/x", ("/data",), True),
        ("/database/x", ("/data",), False),
        ("/etc/passwd", ("/data", "ais-layout"), False),
    ],
)
def test_fqn_confinement_policy(path: str, allow: tuple[str, ...], allowed: bool) -> None:
    assert fqn_allowed(path, allow) is allowed


# --- TV-23 .. TV-25: pipeline header -----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "first", "rest"),
    [
        ("http://10.0.0.1:31246", "http://10.0.0.1:31246", ""),
        (
            "http://10.0.0.1:31246,http://10.0.0.2:51081/ais%2F@%23%2Fdst%2Fx.txt?owt=3&uuid=XyZ123",
            "http://10.0.0.1:31246",
            "http://10.0.0.2:51081/ais%2F@%23%2Fdst%2Fx.txt?owt=3&uuid=XyZ123",
        ),
        (
            "http://n1:8080/t1,http://n2:8080/t2,http://n3:8080/final",
            "http://n1:8080/t1",
            "http://n2:8080/t2,http://n3:8080/final",
        ),
        ("  http://n1:8080/t1  ,  http://n2:8080/t2  ", "http://n1:8080/t1", "http://n2:8080/t2"),
    ],
)
def test_tv23_valid_pipeline_headers(header: str, first: str, rest: str) -> None:
    assert parse_pipeline(header) == (first, rest)


@pytest.mark.parametrize(
    "header",
    [
        ",http://n1:8080/t",
        "http://n1:8080/t,",
        "http://n1:8080/t,,http://n2:8080/t",
        ",,,",
        "   ,   ",
        "http://n1:8080/t,,   ,http://n2:8080/t",
        ",,invalid,,",
    ],
)
def test_tv24_malformed_pipeline_headers(header: str) -> None:
    with pytest.raises(InvalidPipelineError):
        parse_pipeline(header)


@pytest.mark.parametrize("header", [None, "", "   ", "\t"])
def test_tv25_blank_pipeline_headers(header: str | None) -> None:
    assert parse_pipeline(header) == ("", "")


# --- TV-26 .. TV-34: direct-put URL composition ------------------------------------------------


def _same_url(actual: str, expected: str) -> None:
    a, e = urlsplit(actual), urlsplit(expected)
    assert (a.scheme, a.netloc, a.path) == (e.scheme, e.netloc, e.path)
    assert parse_qs(a.query, keep_blank_values=True) == parse_qs(e.query, keep_blank_values=True)


@pytest.mark.parametrize(
    ("hop", "path", "args", "expected"),
    [
        (DST, "images/cat 1.jpg", "", A + "/ais%2F@%23%2Fdst%2Fnew%20name.txt?owt=3&uuid=XyZ123"),
        (
            DST,
            "images/cat 1.jpg",
            '{"size":256}',
            A + "/ais%2F@%23%2Fdst%2Fnew%20name.txt?owt=3&uuid=XyZ123"
            "&etl_args=%7B%22size%22%3A256%7D",
        ),
        (
            "http://10.0.0.2:51081/ais%2F@%23%2Fdst%2Fo?etl_args=old&owt=3&uuid=X",
            "b/o",
            "new",
            A + "/ais%2F@%23%2Fdst%2Fo?owt=3&uuid=X&etl_args=new",
        ),
        (
            "http://10.0.0.1:31246",
            "images/cat 1.jpg",
            "",
            "http://10.0.0.1:31246/images/cat%201.jpg",
        ),
        (
            "http://10.0.0.1:31246",
            "images/cat 1.jpg",
            "a b,c",
            "http://10.0.0.1:31246/images/cat%201.jpg?etl_args=a+b%2Cc",
        ),
        (
            "http://10.0.0.1:31246",
            "ais/@#/images/dir/cat.jpg",
            "",
            "http://10.0.0.1:31246/ais/@%23/images/dir/cat.jpg",
        ),
        (
            "http://10.0.0.1:31246",
            "cat 1.jpg",
            "q=1",
            "http://10.0.0.1:31246/cat%201.jpg?etl_args=q%3D1",
        ),
        (
            "http://10.0.0.2:51081/ais%2F@%23%2Fdst%2Fhashed.txt",
            "src/text.txt",
            "",
            A + "/ais%2F@%23%2Fdst%2Fhashed.txt",
        ),
    ],
    ids=["TV-26", "TV-27", "TV-28", "TV-29", "TV-30", "TV-31", "TV-32", "TV-33"],
)
def test_direct_put_url(hop: str, path: str, args: str, expected: str) -> None:
    expected = expected.replace(A, "http://10.0.0.2:51081/v1/etl/_object/md5-etl/AbCdEfGhIj")
    _same_url(compose_direct_put_url(hop, A, path, args), expected)


def test_tv28_exactly_one_etl_args() -> None:
    url = compose_direct_put_url(
        "http://h:1/ais%2F@%23%2Fdst%2Fo?etl_args=old&owt=3", A, "b/o", "new"
    )
    assert urlsplit(url).query.count("etl_args=") == 1


def test_tv34_etl_stage_keeps_its_own_scheme_on_an_https_cluster() -> None:
    https_a = A.replace("http://", "https://")
    assert (
        compose_direct_put_url("http://10.0.0.1:31246", https_a, "b/o")
        == "http://10.0.0.1:31246/b/o"
    )
    target_hop = compose_direct_put_url("https://10.0.0.2:51081/ais%2F@%23%2Fb%2Fo", https_a, "b/o")
    assert target_hop.startswith("https://10.0.0.2:51081/v1/etl/_object/")


def test_hop_classification() -> None:
    assert not is_target_hop("http://10.0.0.1:31246")
    assert is_target_hop(DST)


# --- TV-36 .. TV-41: mapping a hop's answer ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "empty", "length", "sent", "expected"),
    [
        (200, True, None, 11, (204, 11, False)),  # TV-36
        (200, True, None, 0, (204, 0, False)),  # TV-37
        (204, True, "42", 11, (204, 42, False)),  # TV-38
        (200, False, None, 11, (200, 0, True)),  # TV-39
        (500, False, None, 11, (500, 0, True)),  # TV-40
        (507, False, None, 11, (507, 0, True)),  # TV-41
        (204, True, "garbage", 11, (204, 0, False)),
    ],
)
def test_hop_response_mapping(
    status: int, empty: bool, length: str | None, sent: int, expected: tuple[int, int, bool]
) -> None:
    outcome = interpret_hop_response(status, empty, length, sent)
    assert (outcome.status, outcome.direct_put_length, outcome.relay_body) == expected


def test_empty_result_marker_keeps_an_empty_final_result() -> None:
    outcome = interpret_hop_response(200, True, None, 5, empty_result=True)
    assert (outcome.status, outcome.relay_body) == (200, True)


def test_retry_schedule() -> None:
    assert [retry_delay(k) for k in range(6)] == [1, 2, 4, 8, 16, 30]
    assert retry_delay(2, base=0.01) == pytest.approx(0.04)


# --- target-side encoding ----------------------------------------------------------------------


def test_target_uname_and_escapes() -> None:
    uname = target_uname("images", "dir/cat 1.jpg")
    assert uname == "ais/@#/images/dir/cat 1.jpg"
    assert go_path_escape(uname) == "ais%2F@%23%2Fimages%2Fdir%2Fcat%201.jpg"
    assert go_path_escape("a$&+:=@;,?b") == "a$&+:=@%3B%2C%3Fb"


def test_tv07_fqn_query_encoding() -> None:
    query = go_query_encode(
        {
            "etl_fqn": fqn_query_value("/ais/mp1/@ais/images/%ob/cat 1.jpg"),
            "etl_args": '{"size":256}',
        }
    )
    assert query == (
        "etl_args=%7B%22size%22%3A256%7D&etl_fqn=%252Fais%252Fmp1%252F%40ais%252Fimages"
        "%252F%2525ob%252Fcat%25201.jpg"
    )


def test_tv48_ws_control_message() -> None:
    message = ws_control_message("cat 1.jpg", fqn="/ais/mp1/@ais/images/%ob/cat 1.jpg")
    assert (
        message
        == b'{"fqn":"%2Fais%2Fmp1%2F@ais%2Fimages%2F%25ob%2Fcat%201.jpg","path":"cat 1.jpg"}'
    )
    parsed = parse_ws_control(message)
    assert sanitize_fqn(parsed["fqn"]) == "/ais/mp1/@ais/images/%ob/cat 1.jpg"


def test_ws_control_message_order_keeps_html_characters_literal() -> None:
    """The target's JSON encoder does not HTML-escape (TV-50 carries a literal ``&``)."""
    message = ws_control_message("a<b>&c", etl_args="q=1", pipeline="http://h:1/o?owt=3&uuid=X")
    assert message == b'{"pipeline":"http://h:1/o?owt=3&uuid=X","etl_args":"q=1","path":"a<b>&c"}'
    assert json.loads(message)["path"] == "a<b>&c"


@pytest.mark.parametrize("message", [b"not json", b"[1,2]", b'{"path": 3}', b"\xff\xfe", "{"])
def test_malformed_ws_control_messages(message: bytes | str) -> None:
    with pytest.raises(ValueError):
        parse_ws_control(message)


def test_ws_control_accepts_text_and_ignores_unknown_keys() -> None:
    assert parse_ws_control('{"path":"a","extra":1}') == {
        "pipeline": "",
        "etl_args": "",
        "fqn": "",
        "path": "a",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("t", True),
        ("TRUE", True),
        ("y", True),
        ("Yes", True),
        ("on", True),
        ("", False),
        (None, False),
        ("0", False),
        ("false", False),
        ("nope", False),
    ],
)
def test_parse_bool(value: str | None, expected: bool) -> None:
    assert parse_bool(value) is expected


@pytest.mark.parametrize(
    ("method", "raw_path", "expected"),
    [
        ("GET", "/health", True),
        ("HEAD", "/health", True),
        ("PUT", "/health", False),  # an object named "health" hopping on from a ws stage
        ("POST", "/health", False),
        ("GET", "/health/x", False),
        ("GET", "/b/health", False),
    ],
)
def test_only_get_and_head_of_health_are_probes(method: str, raw_path: str, expected: bool) -> None:
    assert is_health_check(method, raw_path) is expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b'{"path":"a.txt"}', True),
        ('{"fqn":"%2Fais%2Fx","path":"x"}', True),
        (b'{"path":"a","future_key":1}', True),
        (b"{}", False),
        (b'{"size":3}', False),
        (b"[1,2]", False),
        (b"not json", False),
        (b"\xff\xfe", False),
    ],
)
def test_what_names_an_object_after_an_invalid_control_message(
    message: bytes | str, expected: bool
) -> None:
    assert names_an_object(message) is expected
