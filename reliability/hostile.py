"""Hostile HTTP requests and ws control messages, as hypothesis strategies.

Shared by the fast property tests (``make test``) and the seeded fuzz of the reliability
suite. Every request is complete (it ends its head and declares its body), so a server that
parses it has everything it needs to answer at once.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

#: Pieces that broke or could break a parser: NUL, control characters, undecodable bytes,
#: malformed escapes, URL syntax in the wrong place.
NASTY = [
    b"%00", b"%2500", b"%252Ftmp%2500x", b"%ff", b"%c3%28", b"%2", b"%zz", b"%", b"\x80",
    b"\xff", b"\xc3\x28", b"\x00", b"\x01", b"\x7f", b"..", b"/", b"//", b"?", b"&", b"=",
    b"#", b"+", b",", b"@", b"[", b"]", b":", b";", b"%2F", b"%3F", b"%23", b"\t", b" ",
]  # fmt: skip
PIECE = st.one_of(
    st.sampled_from(NASTY),
    st.binary(min_size=1, max_size=3),
    st.text("abcXYZ09-_.~", max_size=4).map(str.encode),
)
VALUE = st.lists(PIECE, max_size=8).map(b"".join)
HOP = st.one_of(
    st.builds(
        lambda scheme, host, port, rest: scheme + host + port + rest,
        st.sampled_from([b"http://", b"https://", b"ftp://", b"", b"http:/"]),
        st.sampled_from([b"127.0.0.1", b"h", b"[::1", b"[::1]", b"[zz]", b"", b"a b", b"\xff"]),
        st.sampled_from([b"", b":", b":1", b":99999", b":-1", b":notaport", b":8080"]),
        st.one_of(st.just(b""), VALUE),
    ),
    VALUE,
)
HOP_LIST = st.lists(HOP, min_size=1, max_size=3).map(b",".join)
QUERY_KEYS = [b"etl_fqn", b"etl_args", b"latest-ver", b"x", b"etl_fqn?", b""]


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """A query string of hostile keys and values."""
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), VALUE), max_size=3))
    return b"&".join(key + b"=" + value for key, value in pairs)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """One complete HTTP/1.1 request with a hostile path, query and hop header."""
    method = draw(st.sampled_from([b"PUT", b"GET", b"POST", b"PATCH", b"PUT"]))
    path = b"/" + draw(VALUE)
    query = draw(queries())
    target = path + (b"?" + query if query else b"")
    headers = [b"Host: fuzz", b"Connection: close", b"Content-Length: 3"]
    if draw(st.booleans()):
        headers.append(b"Ais-Node-Url: " + draw(HOP_LIST))
    if draw(st.booleans()):
        headers.append(
            draw(st.sampled_from([b"X-Junk: ", b"Ais-Node-Url:", b"Transfer-Encoding: gzip, "]))
            + draw(VALUE)
        )
    return method + b" " + target + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\nabc"


def _json(value: object) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


TEXTISH = VALUE.map(lambda raw: raw.decode("utf-8", "surrogateescape"))
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), TEXTISH),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(TEXTISH, inner, max_size=3)
    ),
    max_leaves=6,
)
CONTROL = st.fixed_dictionaries(
    {},
    optional={
        "path": st.one_of(TEXTISH, JSON_VALUE),
        "fqn": st.one_of(TEXTISH, JSON_VALUE),
        "etl_args": st.one_of(TEXTISH, JSON_VALUE),
        "pipeline": st.one_of(HOP_LIST.map(lambda raw: raw.decode("latin-1")), JSON_VALUE),
    },
)
#: A ws message a target could never send: bad JSON, wrong types, deep nesting, junk bytes.
WS_MESSAGES = st.one_of(
    CONTROL.map(_json),
    JSON_VALUE.map(_json),
    st.binary(max_size=64),
    st.integers(100, 5000).map(lambda depth: b"[" * depth),
    st.just(b"9" * 5000),
)
