"""Go's ``net/url`` where a target's requests depend on it (§5.6), and ``strconv.Quote``.

A Go target builds an hpush URL by appending the object name unescaped, then lets ``url.Parse``
and ``URL.RequestURI`` decide what reaches the wire; these functions reproduce both, error
messages included, so the emulated target puts on the wire what a real one would.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes, urlencode

#: Characters Go's ``url.PathEscape`` leaves alone besides the unreserved set.
_GO_PATH_SEGMENT_SAFE = "$&+:=@"


def go_path_escape(value: str) -> str:
    """Go's ``url.PathEscape``: one path segment; ``/ ? # % ; ,`` and spaces are escaped."""
    return quote(value, safe=_GO_PATH_SEGMENT_SAFE, errors="surrogateescape")


def go_query_encode(params: Mapping[str, str]) -> str:
    """Go's ``url.Values.Encode``: keys sorted, form encoding (space as ``+``)."""
    return urlencode(sorted(params.items()))


class GoURLError(ValueError):
    """Go's ``url.Parse`` rejected a URL; ``str()`` is Go's exact error text."""


_UNRESERVED = "-_.~"
# Characters each Go escaping mode leaves alone besides alphanumerics and "-_.~".
_SAFE_PATH = "$&+,/:;=@"
_SAFE_SEGMENT = "$&+:=@"
_SAFE_FRAGMENT = "$&+,/:;=?@!()*"
# Bytes ``validEncoded`` accepts without escaping in a path.
_VALID_ENCODED = frozenset(
    (string.ascii_letters + string.digits + _UNRESERVED + "!$&'()*+,;=:@[]%/").encode()
)
_VALID_ENCODED_FRAGMENT = _VALID_ENCODED | frozenset(b"?")
_HEXDIGITS = frozenset(string.hexdigits.encode())


def _escape(raw: bytes, safe: str) -> str:
    return quote_from_bytes(raw, safe=safe)


def _unescape(raw: bytes) -> bytes:
    """Percent-decode like Go (``+`` untouched); raises the Go escape error on a bad ``%``."""
    index = raw.find(b"%")
    while index >= 0:
        triple = raw[index : index + 3]
        if len(triple) < 3 or triple[1] not in _HEXDIGITS or triple[2] not in _HEXDIGITS:
            raise GoURLError("invalid URL escape " + go_quote(triple))
        index = raw.find(b"%", index + 3)
    return unquote_to_bytes(raw) if b"%" in raw else raw


def _valid_encoded(raw: bytes, allowed: frozenset[int]) -> bool:
    return all(byte in allowed for byte in raw)


def _has_ctl(raw: bytes) -> bool:
    return any(byte < 0x20 or byte == 0x7F for byte in raw)


def go_quote(value: str | bytes) -> str:
    """Go's ``strconv.Quote``: double-quoted, with Go escapes for non-printable runes."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    out = ['"']
    text = raw.decode("utf-8", "surrogateescape")
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an invalid UTF-8 byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif char in _GO_CHAR_ESCAPES:
            out.append(_GO_CHAR_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_CHAR_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


@dataclass(frozen=True)
class GoURL:
    """The parts of a URL as Go's ``url.Parse`` stores them (byte strings, decoded path)."""

    scheme: str
    host: str
    path: bytes
    raw_path: bytes
    force_query: bool
    raw_query: bytes
    fragment: bytes
    raw_fragment: bytes

    def escaped_path(self) -> str:
        """Go's ``URL.EscapedPath``: the raw path when it is a valid spelling, else re-escaped."""
        if self.raw_path and _valid_encoded(self.raw_path, _VALID_ENCODED):
            try:
                if _unescape(self.raw_path) == self.path:
                    return self.raw_path.decode("ascii")
            except GoURLError:
                pass
        return _escape(self.path, _SAFE_PATH)

    def request_uri(self) -> str:
        """Go's ``URL.RequestURI``: what goes on the request line (query kept raw)."""
        result = self.escaped_path() or "/"
        if self.force_query or self.raw_query:
            result += "?" + self.raw_query.decode("utf-8", "surrogateescape")
        return result

    def __str__(self) -> str:
        """Go's ``URL.String``."""
        out = f"{self.scheme}://{self.host}" if self.scheme else ""
        path = self.escaped_path()
        if path and not path.startswith("/") and self.host:
            out += "/"
        out += path
        if self.force_query or self.raw_query:
            out += "?" + self.raw_query.decode("utf-8", "surrogateescape")
        if self.fragment:
            frag = self.raw_fragment
            if not (frag and _valid_encoded(frag, _VALID_ENCODED_FRAGMENT)):
                frag = _escape(self.fragment, _SAFE_FRAGMENT).encode()
            out += "#" + frag.decode("utf-8", "surrogateescape")
        return out


def go_parse_url(url: str) -> GoURL:
    """Go's ``url.Parse`` for absolute ``scheme://host/path?query#fragment`` URLs.

    Raises :class:`GoURLError` carrying Go's message, e.g.
    ``parse "http://h/b/100%.txt": invalid URL escape "%.t"``.
    """
    raw = url.encode("utf-8", "surrogateescape")
    head, _, frag = raw.partition(b"#")
    try:
        parsed = _go_parse(head)
    except GoURLError as exc:
        raise GoURLError(f"parse {go_quote(head)}: {exc}") from None
    if not frag:
        return parsed
    try:
        fragment = _unescape(frag)
    except GoURLError as exc:
        raise GoURLError(f"parse {go_quote(raw)}: {exc}") from None
    raw_fragment = b"" if _escape(fragment, _SAFE_FRAGMENT).encode() == frag else frag
    return GoURL(
        parsed.scheme,
        parsed.host,
        parsed.path,
        parsed.raw_path,
        parsed.force_query,
        parsed.raw_query,
        fragment,
        raw_fragment,
    )


def _go_parse(raw: bytes) -> GoURL:
    if _has_ctl(raw):
        raise GoURLError("net/url: invalid control character in URL")
    scheme, sep, rest = raw.partition(b"://")
    if not sep or not scheme.isalpha():
        raise GoURLError("only absolute URLs are supported by this emulation")
    force_query = False
    if rest.endswith(b"?") and rest.count(b"?") == 1:
        force_query, rest, query = True, rest[:-1], b""
    else:
        rest, _, query = rest.partition(b"?")
    slash = rest.find(b"/")
    host, rest = (rest, b"") if slash < 0 else (rest[:slash], rest[slash:])
    path = _unescape(rest)
    raw_path = b"" if _escape(path, _SAFE_PATH).encode() == rest else rest
    return GoURL(
        scheme.decode().lower(),
        host.decode("utf-8", "surrogateescape"),
        path,
        raw_path,
        force_query,
        query,
        b"",
        b"",
    )


def go_join_path(base: str, path: str) -> str:
    """``cos.JoinPath``: join with exactly one slash between the two parts."""
    if not path:
        return base
    if base.endswith("/") and path.startswith("/"):
        return base + path[1:]
    if not base.endswith("/") and not path.startswith("/"):
        return base + "/" + path
    return base + path


def go_escape_path(raw: bytes) -> str:
    """Escape bytes as Go escapes ``URL.Path`` (``/`` kept)."""
    return _escape(raw, _SAFE_PATH)


def go_unescape(raw: bytes) -> bytes:
    """Percent-decode as Go does (``+`` untouched); :class:`GoURLError` on a malformed ``%``."""
    return _unescape(raw)
