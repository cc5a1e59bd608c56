"""Wire names and pure functions of the AIStore ETL protocol.

Nothing here does I/O. Both sides use it: the servers (parse what a target sends,
compose what they send on) and the emulated target in :mod:`aisetl.target`
(encode requests exactly as a Go target does).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import (
    parse_qsl,
    quote,
    unquote,
    unquote_to_bytes,
    urlencode,
    urlsplit,
    urlunsplit,
)

# --- header names (canonical spelling; matched case-insensitively) ----------------------------
HEADER_NODE_URL = "Ais-Node-Url"
HEADER_DIRECT_PUT_LENGTH = "Ais-Direct-Put-Length"
HEADER_ETL_RETRY_REASON = "Ais-Etl-Retry-Reason"
RETRY_REASON_DIRECT_PUT_TRANSIENT = "direct-put-transient"
#: Private marker between aisetl stages: "this 200 with an empty body is an empty result, not a
#: stored object" (PROTOCOL.md §8.9). Other implementations never send it and need not read it.
HEADER_EMPTY_RESULT = "Aisetl-Empty-Result"

# --- query parameters ------------------------------------------------------------------------
QPARAM_ETL_ARGS = "etl_args"
QPARAM_ETL_FQN = "etl_fqn"
QPARAM_LATEST_VER = "latest-ver"
QPARAM_ORIGINAL_URL = "original_url"
QPARAM_OBJECT_TO = "object_to"

# --- WebSocket control-message keys -----------------------------------------------------------
WS_KEY_PIPELINE = "pipeline"
WS_KEY_ETL_ARGS = "etl_args"
WS_KEY_FQN = "fqn"
WS_KEY_PATH = "path"

# --- fixed paths and bodies -------------------------------------------------------------------
HEALTH_PATH = "/health"
HEALTH_BODY = b"Running"
WS_PATH = "/ws"
DOWNLOAD_PATH = "/download"
ETL_OBJECT_PATH = "/v1/etl/_object"
DEFAULT_PORT = 8000

#: Hpull uname as the reference re-escapes it: one segment, only ``@`` literal.
_UNAME_SAFE = "@"
#: Object path of a PUT to an ETL stage: ``/`` and ``@`` literal.
_STAGE_PATH_SAFE = "/@"

_TRUTHY = frozenset({"1", "t", "true", "y", "yes", "on"})


class InvalidPipelineError(ValueError):
    """The ``Ais-Node-Url`` header (or ws ``pipeline`` key) is malformed."""


def parse_bool(value: str | None) -> bool:
    """Read a boolean the way AIStore does: 1, t, true, y, yes, on (any case) are true."""
    return value is not None and value.strip().lower() in _TRUTHY


# --- request parsing (server side) ------------------------------------------------------------


def is_health_check(method: str, raw_path: str) -> bool:
    """A readiness probe. Only GET and HEAD: ``PUT /health`` is an object named ``health``
    (a pipeline stage receives one when a WebSocket-driven object of that name hops on)."""
    return raw_path == HEALTH_PATH and method in ("GET", "HEAD")


def decode_path(raw_path: str) -> str:
    """Object path as the transform sees it: percent-decoded once, no leading slash.

    Bytes that are not UTF-8 survive as surrogate escapes, so :func:`quote_uname` and
    :func:`quote_stage_path` give back the exact bytes that arrived.
    """
    if raw_path.isascii():  # (what a target sends: the same result, in one step)
        return unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape").lstrip("/")
    return unquote(raw_path, errors="surrogateescape").lstrip("/")


def split_target(target: str) -> tuple[str, str]:
    """Split an HTTP request target into (raw path, raw query)."""
    path, _, query = target.partition("?")
    return path, query


def parse_query(query: str) -> dict[str, str]:
    """Form-decode a query string; the first value of a repeated key wins (as in Go)."""
    params: dict[str, str] = {}
    if query:
        for key, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
            params.setdefault(key, value)
    return params


def mangled_name(path: str, raw_query: str) -> str | None:
    """Why an hpush request proves the object name held a ``?`` (PROTOCOL.md §5.6), or ``None``.

    A Go target appends the name unescaped, so the name is cut at its ``?`` and the rest of it
    merges with the real query: a query key that contains ``?`` (``.txt?etl_fqn``) cannot come
    from a target otherwise. Transforming such a request would transform the wrong input.
    """
    if "?" not in raw_query:
        return None
    for key, _ in parse_qsl(raw_query, keep_blank_values=True, errors="surrogateescape"):
        if "?" in key:
            tail = key.rsplit("?", 1)[0]
            return (
                f"The object name holds a '?': the target sent it unescaped, so the name was cut "
                f"there and its rest ({tail!r}) merged with the query (key {key!r}); the object is "
                f"probably {path + '?' + tail!r}. Rename the object, or use hpull or ws, which "
                "escape names (PROTOCOL.md §5.6)"
            )
    return None


def sanitize_fqn(value: str) -> str:
    """Turn an ``etl_fqn`` value (already query-decoded) into an absolute, normalized path.

    One more percent-decoding (``+`` stays ``+``), then leading slashes collapse into one and
    ``.``/``..``/``//`` are resolved lexically. This is normalization, not confinement:
    ``../../etc/passwd`` becomes ``/etc/passwd``; see :func:`fqn_allowed`.
    """
    decoded = unquote(value.strip(), errors="surrogateescape")
    return posixpath.normpath("/" + decoded.lstrip("/"))


#: The ``AISETL_FQN_ALLOW`` value that accepts only paths laid out like AIStore objects.
FQN_POLICY_AIS_LAYOUT = "ais-layout"


def fqn_allowed(path: str, allow: Iterable[str]) -> bool:
    """Whether a sanitized FQN passes the opt-in confinement policy.

    ``allow`` lists root folders; the special entry ``ais-layout`` accepts any path that has a
    ``/@<provider>/`` component followed later by a ``/%ob/`` component. An empty policy
    accepts everything (the reference behaviour).
    """
    roots = [entry for entry in allow if entry]
    if not roots:
        return True
    for root in roots:
        if root == FQN_POLICY_AIS_LAYOUT:
            if _has_ais_layout(path):
                return True
            continue
        base = posixpath.normpath("/" + root.lstrip("/"))
        if base == "/" or path == base or path.startswith(base + "/"):
            return True
    return False


def _has_ais_layout(path: str) -> bool:
    parts = path.split("/")
    for index, part in enumerate(parts):
        if part.startswith("@") and len(part) > 1 and "%ob" in parts[index + 1 :]:
            return True
    return False


def parse_pipeline(header: str | None) -> tuple[str, str]:
    """Split a hop list into (first hop, the rest); ("", "") when there is no pipeline.

    Raises :class:`InvalidPipelineError` when any entry is empty (a leading, trailing or
    doubled comma, or a blank entry).
    """
    if header is None:
        return "", ""
    value = header.strip()
    if not value:
        return "", ""
    entries = [entry.strip() for entry in value.split(",")]
    if any(not entry for entry in entries):
        raise InvalidPipelineError(
            f"empty entry in hop list {header!r}: expected comma-separated URLs"
        )
    first, _, rest = value.partition(",")
    return first.strip(), rest.strip()


def is_target_hop(hop: str) -> bool:
    """Whether a hop is a destination target (it has a path) rather than an ETL stage."""
    return bool(urlsplit(hop).path)


def quote_uname(path: str) -> str:
    """Escape a decoded hpull uname as one path segment (only ``@`` kept literal)."""
    return quote(path, safe=_UNAME_SAFE, errors="surrogateescape")


def quote_stage_path(path: str) -> str:
    """Escape an object path for a PUT to an ETL stage (``/`` and ``@`` kept literal)."""
    return quote(path, safe=_STAGE_PATH_SAFE, errors="surrogateescape")


def upstream_url(target_url: str, path: str) -> str:
    """URL of the hpull GET for a decoded uname: ``AIS_TARGET_URL/<escaped uname>``."""
    return f"{target_url.rstrip('/')}/{quote_uname(path)}"


def compose_direct_put_url(hop: str, target_url: str, path: str, etl_args: str = "") -> str:
    """URL of the PUT that delivers a result to ``hop`` (PROTOCOL.md §8.4).

    A destination target (hop with a path) gets ``AIS_TARGET_URL``'s path in front of the
    hop's path, kept exactly as escaped. An ETL stage (no path) gets the object path. The hop's
    query is kept; ``etl_args`` replaces any ``etl_args`` already there. The scheme is the
    hop's own (the references use ``AIS_TARGET_URL``'s, which breaks plain-HTTP ETL stages on
    an HTTPS cluster).
    """
    hop_parts = urlsplit(hop)
    target_parts = urlsplit(target_url)
    if hop_parts.path:
        final_path = target_parts.path.rstrip("/") + hop_parts.path
    else:
        final_path = "/" + quote_stage_path(path)
    query = hop_parts.query
    if etl_args:
        pairs = [
            (key, value)
            for key, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape")
            if key != QPARAM_ETL_ARGS
        ]
        pairs.append((QPARAM_ETL_ARGS, etl_args))
        query = urlencode(pairs, errors="surrogateescape")  # undecodable bytes go on as sent
    scheme = hop_parts.scheme or target_parts.scheme or "http"
    return urlunsplit((scheme, hop_parts.netloc, final_path, query, ""))


# --- replies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HopOutcome:
    """How a server answers upstream after delivering its result to the next hop."""

    status: int
    direct_put_length: int
    relay_body: bool  # True: answer with the hop's body (a downstream stage's final content)


def interpret_hop_response(
    status: int,
    body_empty: bool,
    hop_length: str | None,
    bytes_sent: int,
    empty_result: bool = False,
) -> HopOutcome:
    """Map a hop's response to this server's answer (PROTOCOL.md §8.6).

    ``empty_result`` is the private aisetl marker: a downstream aisetl stage whose transform
    produced zero bytes says so, and the empty 200 is relayed as content, not as "stored".
    """
    if status == 204:
        return HopOutcome(204, _parse_length(hop_length), relay_body=False)
    if status == 200 and body_empty and not empty_result:
        return HopOutcome(204, bytes_sent, relay_body=False)
    return HopOutcome(status, 0, relay_body=True)


def _parse_length(value: str | None) -> int:
    try:
        return max(int(value or "0"), 0)
    except ValueError:
        return 0


def direct_put_headers(length: int) -> dict[str, str]:
    """Response headers that report a direct put (none when nothing was counted)."""
    return {HEADER_DIRECT_PUT_LENGTH: str(length)} if length > 0 else {}


def retry_delay(attempt: int, base: float = 1.0, cap: float = 30.0) -> float:
    """Seconds to sleep before retry number ``attempt + 1`` (0-based): base·2^attempt, capped."""
    return float(min(base * (2**attempt), cap))


def names_an_object(message: bytes | str) -> bool:
    """Whether a ws message is a control message naming an object (``path`` or ``fqn``).

    Used after a control message that could not be parsed: the message that follows is either
    the next task's control message or the failed task's payload, and only this tells them apart.
    """
    try:
        control = parse_ws_control(message)
    except ValueError:
        return False
    return bool(control[WS_KEY_PATH] or control[WS_KEY_FQN])


_JSON = json.JSONDecoder()


def parse_ws_control(message: bytes | str) -> dict[str, str]:
    """Decode a ws control message; unknown keys are ignored, missing ones are empty.

    Raises ``ValueError`` with a readable message when it is not a JSON object of strings.
    """
    try:
        if isinstance(message, bytes) and message[:1] == b"{" and message[1:2] != b"\0":
            # what json.loads does with such bytes (it detects UTF-8), without its detour
            data = _JSON.decode(message.decode("utf-8", "surrogatepass"))
        else:
            data = json.loads(message)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"control message is not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("control message is JSON nested too deeply, expected an object") from None
    if not isinstance(data, dict):
        raise ValueError(f"control message is JSON {type(data).__name__}, expected an object")
    result: dict[str, str] = {}
    for key in (WS_KEY_PIPELINE, WS_KEY_ETL_ARGS, WS_KEY_FQN, WS_KEY_PATH):
        value = data.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"control message key {key!r} must be a string")
        result[key] = value
    return result
