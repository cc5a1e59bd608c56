"""Pure target-side encodings against the PROTOCOL.md §18 test vectors."""

from __future__ import annotations

import pytest

from aisetl.target.wire import (
    GoURLError,
    ObjectName,
    UnameError,
    bucket_cname,
    destination_hop,
    etl_error_message,
    etl_target_url,
    go_parse_url,
    go_quote,
    hpull_location,
    hpull_request_uri,
    hpush_request_uri,
    new_job_id,
    new_secret,
    pack_pipeline,
    parse_etl_object_path,
    parse_uname,
    request_head,
    retriable_status_message,
    retry_sleeps,
    stable_owner,
    validate_etl_name,
    ws_control_message,
)

POD = "http://10.0.0.1:31245"
FQN = "/ais/mp1/@ais/images/%ob/cat 1.jpg"
FQN_Q = "%252Fais%252Fmp1%252F%40ais%252Fimages%252F%2525ob%252Fcat%25201.jpg"


def test_tv01_target_url() -> None:
    assert (
        etl_target_url("http://10.0.0.1:51081", "md5-etl", "AbCdEfGhIj")
        == "http://10.0.0.1:51081/v1/etl/_object/md5-etl/AbCdEfGhIj"
    )


@pytest.mark.parametrize("faithful", [True, False])
def test_tv07_fqn_mode_with_args(faithful: bool) -> None:
    uri = hpush_request_uri(POD, "images", "cat 1.jpg", '{"size":256}', FQN, faithful=faithful)
    assert uri == f"/images/cat%201.jpg?etl_args=%7B%22size%22%3A256%7D&etl_fqn={FQN_Q}"


def test_tv07_tv08_head_layout() -> None:
    uri = hpush_request_uri(POD, "images", "cat 1.jpg", fqn=FQN)
    assert (
        request_head("PUT", uri, "10.0.0.1:31245", content_length=0)
        == (
            f"PUT /images/cat%201.jpg?etl_fqn={FQN_Q} HTTP/1.1\r\n"
            "Host: 10.0.0.1:31245\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    body_uri = hpush_request_uri(POD, "images", "cat 1.jpg")
    head = request_head(
        "PUT", body_uri, "h:1", [("Ais-Node-Url", "http://a:1,http://b:2")], content_length=11
    )
    assert head == (
        b"PUT /images/cat%201.jpg HTTP/1.1\r\nHost: h:1\r\nUser-Agent: Go-http-client/1.1\r\n"
        b"Content-Length: 11\r\nAis-Node-Url: http://a:1,http://b:2\r\n\r\n"
    )
    assert b"Accept-Encoding" not in head and b"Content-Type" not in head


@pytest.mark.parametrize(
    ("args", "query"),
    [("a b,c", "etl_args=a+b%2Cc"), ("a+b c", "etl_args=a%2Bb+c"), ("  x  ", "etl_args=++x++")],
)
def test_tv09_etl_args_encoding(args: str, query: str) -> None:
    assert hpush_request_uri(POD, "b", "o", args) == f"/b/o?{query}"


def test_tv10_non_ascii_and_ampersand() -> None:
    name = "dir/ü & v.txt"
    assert hpush_request_uri(POD, "b", name) == "/b/dir/%C3%BC%20&%20v.txt"
    fqn = "/ais/mp1/@ais/b/%ob/dir/ü & v.txt"
    assert hpush_request_uri(POD, "b", name, fqn=fqn).endswith(
        "?etl_fqn=%252Fais%252Fmp1%252F%40ais%252Fb%252F%2525ob%252Fdir%252F%25C3%25BC%2520"
        "%26%2520v.txt"
    )


def test_tv11_question_mark_cuts_the_path() -> None:
    fqn = "/ais/mp1/@ais/b/%ob/what?.txt"
    uri = hpush_request_uri(POD, "b", "what?.txt", fqn=fqn)
    assert uri == (
        "/b/what?.txt?etl_fqn=%252Fais%252Fmp1%252F%40ais%252Fb%252F%2525ob%252Fwhat%253F.txt"
    )
    sane = hpush_request_uri(POD, "b", "what?.txt", fqn=fqn, faithful=False)
    assert sane.startswith("/b/what%3F.txt?etl_fqn=")


def test_tv12_hash_drops_the_rest() -> None:
    assert hpush_request_uri(POD, "b", "a#b", fqn="/m/@ais/b/%ob/a#b") == "/b/a"
    assert hpush_request_uri(POD, "b", "a#b", faithful=False) == "/b/a%23b"


def test_tv13_malformed_percent_sends_nothing() -> None:
    with pytest.raises(GoURLError) as info:
        hpush_request_uri(POD, "b", "100%.txt", fqn="/m/@ais/b/%ob/100%.txt")
    assert str(info.value).startswith('parse "http://10.0.0.1:31245/b/100%.txt?etl_fqn=')
    assert str(info.value).endswith(': invalid URL escape "%.t"')
    assert hpush_request_uri(POD, "b", "100%.txt", faithful=False) == "/b/100%25.txt"


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("a%41", "/b/a%41"),  # kept as written: a decoding server sees "aA"
        ("a(b)*!'", "/b/a(b)*!'"),  # valid spelling kept raw
        ("a%2Fb c", "/b/a/b%20c"),  # not a valid raw path: re-escaped from the decoded form
        ("what?", "/b/what?"),  # a single trailing "?" forces an empty query
        ("x?ü y", "/b/x?ü y"),  # the query part is sent raw
        ("semi;colon,=@$+:", "/b/semi;colon,=@$+:"),
        ("~tilde_-.", "/b/~tilde_-."),
    ],
)
def test_go_path_serialization(name: str, wire: str) -> None:
    assert hpush_request_uri(POD, "b", name) == wire


def test_go_parse_errors() -> None:
    with pytest.raises(GoURLError, match="net/url: invalid control character in URL"):
        hpush_request_uri(POD, "b", "line\nbreak")
    with pytest.raises(GoURLError, match='invalid URL escape "%"') as info:
        hpush_request_uri(POD, "b", "a#100%")
    assert '"http://10.0.0.1:31245/b/a#100%"' in str(info.value)
    with pytest.raises(GoURLError, match='invalid URL escape "%zz"'):
        go_parse_url("http://h/a%zzb")


def test_go_url_string() -> None:
    assert str(go_parse_url("http://h:1/a b?x=1#f g")) == "http://h:1/a%20b?x=1#f%20g"
    assert go_parse_url("http://h:1").request_uri() == "/"


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ('q"b\\', '"q\\"b\\\\"'),
        ("tab\tnl\n", '"tab\\tnl\\n"'),
        ("\x01", '"\\x01"'),
        ("ü", '"ü"'),
        (b"\xff", '"\\xff"'),
        ("\u200b", '"\\u200b"'),
    ],
)
def test_go_quote(value: str | bytes, quoted: str) -> None:
    assert go_quote(value) == quoted


def test_tv16_hpull_offline_get() -> None:
    uname = ObjectName("ais", "", "images", "dir/cat.jpg").uname
    assert hpull_request_uri(uname, fqn="/ais/mp1/@ais/images/%ob/dir/cat.jpg") == (
        "/ais%2F@%23%2Fimages%2Fdir%2Fcat.jpg"
        "?etl_fqn=%252Fais%252Fmp1%252F%40ais%252Fimages%252F%2525ob%252Fdir%252Fcat.jpg"
    )
    assert hpull_request_uri(uname) == "/ais%2F@%23%2Fimages%2Fdir%2Fcat.jpg"


def test_tv17_unames() -> None:
    assert hpull_request_uri(ObjectName("aws", "", "bkt", "x y.bin").uname) == (
        "/aws%2F@%23%2Fbkt%2Fx%20y.bin"
    )
    assert hpull_request_uri(ObjectName("ais", "team", "bck", "o").uname) == (
        "/ais%2F@%23team%2Fbck%2Fo"
    )


def test_tv18_inline_redirect_location() -> None:
    uname = "ais/@#/images/dir/cat.jpg"
    fqn = "/ais/mp1/@ais/images/%ob/dir/cat.jpg"
    fqn_q = "%252Fais%252Fmp1%252F%40ais%252Fimages%252F%2525ob%252Fdir%252Fcat.jpg"
    assert hpull_location(POD, uname, "x", fqn) == (
        f"{POD}/ais%2F@%23%2Fimages%2Fdir%2Fcat.jpg?etl_args=x&etl_fqn={fqn_q}"
    )
    assert hpull_location(POD, uname, "", fqn, latest_ver=True) == (
        f"{POD}/ais%2F@%23%2Fimages%2Fdir%2Fcat.jpg?etl_fqn={fqn_q}&latest-ver=true"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/etl/_object/md5-etl/AbCdEfGhIj/ais%2F@%23%2Fdst%2Fa.txt",
        "/v1/etl/_object/md5-etl/AbCdEfGhIj/ais/@%23/dst/a.txt",
    ],
)
def test_tv19_both_uname_forms(path: str) -> None:
    parsed = parse_etl_object_path(path)
    assert (parsed.etl_name, parsed.secret) == ("md5-etl", "AbCdEfGhIj")
    assert parsed.object == ObjectName("ais", "", "dst", "a.txt")


def test_tv19_unescaped_hash_is_invalid() -> None:
    # The client never sends "#..." so only "ais/@" arrives.
    with pytest.raises(UnameError, match="bucket name is missing") as info:
        parse_etl_object_path("/v1/etl/_object/md5-etl/AbCdEfGhIj/ais/@")
    assert info.value.status == 400


def test_uname_parsing_details() -> None:
    assert parse_uname("ais/@#/b/dir/a b%").name == "dir/a b%"
    assert parse_uname("ais/@#team/b/o").namespace == "team"
    assert parse_uname("ais/@uuid#ns/b/o").namespace == "uuid#ns"
    with pytest.raises(UnameError, match="missing object name"):
        parse_uname("ais/@#/b/")
    with pytest.raises(UnameError):
        parse_etl_object_path("/v1/etl/_object/name/secret")
    with pytest.raises(UnameError, match="invalid URL escape"):
        parse_etl_object_path("/v1/etl/_object/n/s/ais%2F@%23%2Fb%2F100%.txt")


def test_cnames() -> None:
    assert ObjectName("ais", "", "src", "a/b.txt").cname == "ais://src/a/b.txt"
    assert bucket_cname("aws", "", "bkt") == "s3://bkt"
    assert bucket_cname("ais", "team", "b") == "ais://@#team/b"


def test_tv26_tv33_tv50_destination_hops() -> None:
    uname = ObjectName("ais", "", "dst", "new name.txt").uname
    assert destination_hop("http://10.0.0.2:51081", uname, "XyZ123") == (
        "http://10.0.0.2:51081/ais%2F@%23%2Fdst%2Fnew%20name.txt?owt=3&uuid=XyZ123"
    )
    assert destination_hop("http://10.0.0.2:51081", "ais/@#/dst/hashed.txt") == (
        "http://10.0.0.2:51081/ais%2F@%23%2Fdst%2Fhashed.txt"
    )
    hop = destination_hop("http://10.0.0.2:51081", "ais/@#/dst/cat 1.jpg", "XyZ123")
    assert ws_control_message("cat 1.jpg", FQN, pipeline=pack_pipeline([hop])) == (
        b'{"pipeline":"http://10.0.0.2:51081/ais%2F@%23%2Fdst%2Fcat%201.jpg?owt=3&uuid=XyZ123",'
        b'"fqn":"%2Fais%2Fmp1%2F@ais%2Fimages%2F%25ob%2Fcat%201.jpg","path":"cat 1.jpg"}'
    )
    assert pack_pipeline(["http://a:1", "http://b:2"]) == "http://a:1,http://b:2"


def test_tv48_tv49_tv51_control_messages() -> None:
    assert ws_control_message("cat 1.jpg", FQN) == (
        b'{"fqn":"%2Fais%2Fmp1%2F@ais%2Fimages%2F%25ob%2Fcat%201.jpg","path":"cat 1.jpg"}'
    )
    assert ws_control_message("cat 1.jpg") == b'{"path":"cat 1.jpg"}'
    assert ws_control_message("cat 1.jpg", etl_args="q=1", pipeline="http://10.0.0.1:31246") == (
        b'{"pipeline":"http://10.0.0.1:31246","etl_args":"q=1","path":"cat 1.jpg"}'
    )


def test_control_message_json_like_the_target() -> None:
    # The target's JSON encoder keeps <, > and & literal and writes UTF-8 as is.
    assert ws_control_message("a<b>&ü") == '{"path":"a<b>&ü"}'.encode()
    assert ws_control_message('q"\\\n\t\x01\x7f') == b'{"path":"q\\"\\\\\\n\\t\\u0001\x7f"}'
    assert ws_control_message("x", etl_args="a&b") == b'{"etl_args":"a&b","path":"x"}'


def test_tv14_error_messages() -> None:
    assert etl_error_message(404, b"nope") == "object not found"
    assert etl_error_message(500, b"boom") == "ETL error: boom"
    assert retriable_status_message(503) == "503 Service Unavailable: retriable soft error"


def test_tv15_retry_schedule() -> None:
    assert retry_sleeps() == [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5]
    assert sum(retry_sleeps()) == 32
    assert retry_sleeps(scale=0.001) == pytest.approx([s / 1000 for s in retry_sleeps()])
    assert retry_sleeps(retries=0) == []


def test_names_and_ids() -> None:
    secret = new_secret()
    assert len(secret) == 10 and secret.isalpha() and secret.isascii()
    assert new_job_id()[0].isalpha()
    for good in ["abcdef", "a" * 32, "-abcdef", "etl-md5-2"]:
        validate_etl_name(good)
    for bad in ["md5", "a" * 33, "my_etl1", "My-etl"]:
        with pytest.raises(ValueError):
            validate_etl_name(bad)


def test_placement_is_stable() -> None:
    ids = ["t0", "t1", "t2"]
    owners = {stable_owner(f"ais/@#/b/o{i}", ids) for i in range(50)}
    assert owners == {0, 1, 2}
    assert stable_owner("ais/@#/b/x", ids) == stable_owner("ais/@#/b/x", ids)
