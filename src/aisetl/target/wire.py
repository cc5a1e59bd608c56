"""Pure target-side wire functions: how a Go target spells its requests, names and errors.

Nothing here does I/O. AIStore's own encodings live here (unames, FQN values, hop URLs, ws
control messages, error texts); Go's ``net/url`` behaviour they rely on is in
:mod:`aisetl.target.gourl`.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus

from aisetl import comm as comms
from aisetl.protocol import ETL_OBJECT_PATH, QPARAM_ETL_ARGS, QPARAM_ETL_FQN, QPARAM_LATEST_VER
from aisetl.target.gourl import GoURLError as GoURLError
from aisetl.target.gourl import go_escape_path, go_join_path, go_parse_url, go_unescape
from aisetl.target.gourl import go_path_escape as go_path_escape
from aisetl.target.gourl import go_query_encode as go_query_encode
from aisetl.target.gourl import go_quote as go_quote

#: What a Go HTTP client sends as ``User-Agent`` when none is set.
GO_USER_AGENT = "Go-http-client/1.1"
#: Object-write-transaction code of a transform (``owt`` query parameter).
OWT_TRANSFORM = "3"
QPARAM_UUID = "uuid"


def target_uname(bucket: str, obj: str, provider: str = "ais", namespace: str = "") -> str:
    """AIStore's uname of an object: ``<provider>/@<ns-uuid>#<ns-name>/<bucket>/<object>``.

    The global namespace is written ``@#``; ``namespace`` is the part after ``@``.
    """
    ns = "@" + namespace if "#" in namespace else "@#" + namespace
    return f"{provider}/{ns}/{bucket}/{obj}"


def fqn_query_value(fqn: str) -> str:
    """The ``etl_fqn`` value a target puts in the query (escaped once; encoding adds the 2nd)."""
    return go_path_escape(fqn)


QPARAM_OWT = "owt"
QPARAM_ETL_NAME = "etl_name"
QPARAM_ETL_PIPELINE = "etl_pipeline"
QPARAM_PROVIDER = "provider"
QPARAM_NAMESPACE = "namespace"
OBJECTS_PATH = "/v1/objects"
#: Message of the error a target records when an ETL answers 404.
MSG_NOT_FOUND = "object not found"
#: Message of ``cmn.ErrSkip`` (an inline request answered 204).
MSG_SKIP = "skip"
COMM_TYPES = comms.NAMES

_SECRET_ALPHABET = string.ascii_letters
_ID_ALPHABET = string.ascii_letters + string.digits
_ETL_NAME_RE = re.compile(r"[a-z0-9-]{6,32}")
_BUCKET_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PLAIN_NAME_RE = re.compile(r"[A-Za-z0-9._~/-]*")


# --- request builders -------------------------------------------------------------------------


def hpush_url(base: str, bucket: str, obj: str, etl_args: str = "", fqn: str = "") -> str:
    """The URL string a Go target hands to its HTTP client for an hpush PUT (§5.1).

    The object name is appended unescaped; ``fqn`` (when given) is the object's path on disk.
    """
    query: dict[str, str] = {}
    if etl_args:
        query[QPARAM_ETL_ARGS] = etl_args
    if fqn:
        query[QPARAM_ETL_FQN] = fqn_query_value(fqn)
    url = go_join_path(base, f"{bucket}/{obj}")
    return f"{url}?{go_query_encode(query)}" if query else url


def hpush_request_uri(
    base: str,
    bucket: str,
    obj: str,
    etl_args: str = "",
    fqn: str = "",
    *,
    faithful: bool = True,
) -> str:
    """The request-line target of an hpush PUT.

    ``faithful``: exactly what Go puts on the wire, defects included (§5.6: ``?`` and ``#``
    cut the path; a malformed ``%`` raises :class:`GoURLError` because no request is sent).
    Otherwise the object name is escaped properly, as a fixed target would do.
    """
    if faithful:
        if _PLAIN_NAME_RE.fullmatch(bucket) and _PLAIN_NAME_RE.fullmatch(obj):
            url = hpush_url("", bucket, obj, etl_args, fqn)
            return "/" + url.lstrip("/")
        return go_parse_url(hpush_url(base, bucket, obj, etl_args, fqn)).request_uri()
    path = "/" + go_path_escape(bucket) + "/" + quote_object_path(obj)
    query: dict[str, str] = {}
    if etl_args:
        query[QPARAM_ETL_ARGS] = etl_args
    if fqn:
        query[QPARAM_ETL_FQN] = fqn_query_value(fqn)
    return f"{path}?{go_query_encode(query)}" if query else path


def quote_object_path(obj: str) -> str:
    """Escape an object name for a URL path the way Go escapes ``URL.Path`` (``/`` kept)."""
    return go_escape_path(obj.encode("utf-8", "surrogateescape"))


def hpull_query(etl_args: str = "", fqn: str = "", latest_ver: bool = False) -> str:
    """The sorted query of an hpull GET or redirect (§6.1, §6.2)."""
    query: dict[str, str] = {}
    if etl_args:
        query[QPARAM_ETL_ARGS] = etl_args
    if fqn:
        query[QPARAM_ETL_FQN] = fqn_query_value(fqn)
    if latest_ver:
        query[QPARAM_LATEST_VER] = "true"
    return go_query_encode(query)


def hpull_request_uri(
    uname: str, etl_args: str = "", fqn: str = "", latest_ver: bool = False
) -> str:
    """The request-line target of an offline hpull GET: ``/<uname as one segment>[?query]``."""
    query = hpull_query(etl_args, fqn, latest_ver)
    path = "/" + go_path_escape(uname)
    return f"{path}?{query}" if query else path


def hpull_location(
    server_url: str, uname: str, etl_args: str = "", fqn: str = "", latest_ver: bool = False
) -> str:
    """The ``Location`` of the 307 a target answers to an inline hpull GET (§6.1)."""
    return go_join_path(server_url, hpull_request_uri(uname, etl_args, fqn, latest_ver))


def destination_hop(target_url: str, dst_uname: str, job_id: str = "") -> str:
    """The destination-target hop (§8.3); ``job_id`` adds ``?owt=3&uuid=<job_id>``."""
    url = go_join_path(target_url, go_path_escape(dst_uname))
    if job_id:
        url += "?" + go_query_encode({QPARAM_OWT: OWT_TRANSFORM, QPARAM_UUID: job_id})
    return url


def pack_pipeline(hops: Iterable[str]) -> str:
    """Join hop URLs into an ``Ais-Node-Url`` value."""
    return ",".join(hops)


def etl_target_url(target_url: str, etl_name: str, secret: str) -> str:
    """``AIS_TARGET_URL`` of an ETL on a target (TV-01)."""
    return f"{target_url.rstrip('/')}{ETL_OBJECT_PATH}/{etl_name}/{secret}"


def request_head(
    method: str,
    uri: str,
    host: str,
    headers: Sequence[tuple[str, str]] = (),
    content_length: int | None = None,
    user_agent: str = GO_USER_AGENT,
) -> bytes:
    """A request head laid out as Go's client writes it.

    Order: request line, ``Host``, ``User-Agent``, ``Content-Length`` (when given), then the
    other headers sorted by name.
    """
    lines = [f"{method} {uri} HTTP/1.1", f"Host: {host}", f"User-Agent: {user_agent}"]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    lines.extend(f"{name}: {value}" for name, value in sorted(headers))
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


def go_json_string(value: str) -> bytes:
    r"""A JSON string as the target's encoder writes it (jsoniter, ``EscapeHTML: false``).

    ``"`` and ``\`` are escaped, ``\n \r \t`` by name, other bytes below 0x20 as
    ``\u00xx``; everything else, ``<``, ``>``, ``&`` and non-ASCII included, is kept as is.
    """
    raw = value.encode("utf-8", "surrogateescape")
    if not _JSON_SPECIAL.search(raw):
        return b'"' + raw + b'"'
    return b'"' + _JSON_SPECIAL.sub(_json_escape, raw) + b'"'


_JSON_SPECIAL = re.compile(rb'["\\\x00-\x1f]')
_JSON_NAMED = {b'"': b'\\"', b"\\": b"\\\\", b"\n": b"\\n", b"\r": b"\\r", b"\t": b"\\t"}


def _json_escape(match: re.Match[bytes]) -> bytes:
    char = match.group()
    return _JSON_NAMED.get(char) or b"\\u%04x" % char[0]


def ws_control_message(path: str, fqn: str = "", etl_args: str = "", pipeline: str = "") -> bytes:
    """A target's ws control message (§7.3): compact JSON, Go field order, empty keys omitted.

    ``fqn`` is the object's path on disk (it is escaped once here, as the target does).
    Unlike :func:`aisetl.protocol.ws_control_message`, ``<``, ``>`` and ``&`` stay literal:
    the target's JSON encoder does not HTML-escape (TV-50 shows a literal ``&``).
    """
    fields = (
        (b"pipeline", pipeline),
        (b"etl_args", etl_args),
        (b"fqn", go_path_escape(fqn) if fqn else ""),
        (b"path", path),
    )
    parts = [b'"' + key + b'":' + go_json_string(value) for key, value in fields if value]
    return b"{" + b",".join(parts) + b"}"


# --- names ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectName:
    """An object's full name: provider, namespace (``""`` = global), bucket and object."""

    provider: str
    namespace: str
    bucket: str
    name: str

    @property
    def uname(self) -> str:
        """``<provider>/@<ns>/<bucket>/<object>`` (global namespace ``@#``)."""
        return target_uname(self.bucket, self.name, self.provider, self.namespace)

    @property
    def cname(self) -> str:
        """``<provider>://[<ns>/]<bucket>/<object>``, as targets name objects in errors."""
        return bucket_cname(self.provider, self.namespace, self.bucket) + "/" + self.name


_SCHEMES = {"aws": "s3", "gcp": "gs", "azure": "az"}


def bucket_cname(provider: str, namespace: str, bucket: str) -> str:
    """``ais://bucket`` or ``ais://@uuid#ns/bucket``; ``aws`` is spelled ``s3`` etc."""
    scheme = _SCHEMES.get(provider, provider)
    if not namespace:
        return f"{scheme}://{bucket}"
    ns = "@" + namespace if "#" in namespace else "@#" + namespace
    return f"{scheme}://{ns}/{bucket}"


class UnameError(ValueError):
    """A uname that a target cannot parse; ``status`` is the HTTP status it answers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_uname(uname: str) -> ObjectName:
    """Parse ``<provider>/<ns>/<bucket>/<object>`` as a target does (``meta.ParseUname``)."""
    parts = uname.split("/", 3)
    provider = parts[0] if len(parts) > 1 else ""
    ns_part = parts[1] if len(parts) > 2 else ""
    bucket = parts[2] if len(parts) > 3 else ""
    name = parts[3] if len(parts) > 3 else ""
    if not bucket:
        raise UnameError("bucket name is missing")
    if not _valid_bucket_name(bucket):
        raise UnameError(
            "bucket name is invalid: may only contain letters, numbers, dashes (-), "
            "underscores (_), and dots (.)"
        )
    namespace = _parse_namespace(ns_part)
    if not name:
        raise UnameError(f"parse-uname {uname!r}: missing object name")
    return ObjectName(provider, namespace, bucket, name)


def _parse_namespace(ns: str) -> str:
    if ns in ("@#", ""):
        return ""
    body = ns[1:] if ns.startswith("@") else ns
    uuid, sep, name = body.partition("#")
    if not sep:
        return uuid
    return f"{uuid}#{name}" if uuid else name


def _valid_bucket_name(name: str) -> bool:
    return bool(_BUCKET_NAME_RE.fullmatch(name)) and ".." not in name


def validate_bucket_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a valid AIStore bucket name."""
    if not _valid_bucket_name(name):
        raise ValueError(
            f"invalid bucket name {name!r}: use 1-64 letters, digits, '-', '_' or '.' (no '..')"
        )


def validate_etl_name(name: str) -> None:
    """Raise ``ValueError`` unless a target accepts ``name`` (6-32 of ``a-z 0-9 -``)."""
    if not _ETL_NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid ETL name {name!r}: use 6 to 32 characters, only a-z, 0-9 and '-'"
        )


@dataclass(frozen=True)
class ObjectPath:
    """The parts of an ETL object-endpoint path (§6.4)."""

    etl_name: str
    secret: str
    object: ObjectName


def parse_etl_object_path(raw_path: str) -> ObjectPath:
    """Parse ``/v1/etl/_object/<etl>/<secret>/<uname>`` (raw, still escaped).

    The uname may be one escaped segment or slash-separated; it is percent-decoded once.
    Raises :class:`UnameError` (status 400) when the shape is wrong.
    """
    items = [item for item in raw_path.lstrip("/").split("/", 5) if item]
    if len(items) < 6 or items[:3] != ["v1", "etl", "_object"]:
        raise UnameError(f"invalid URL {raw_path.lstrip('/')!r}: expected 6 items")
    try:
        uname = go_unescape(items[5].encode("utf-8", "surrogateescape"))
    except GoURLError as exc:
        raise UnameError(str(exc)) from None
    return ObjectPath(items[3], items[4], parse_uname(uname.decode("utf-8", "surrogateescape")))


# --- results and errors -----------------------------------------------------------------------


@dataclass(frozen=True)
class ObjError:
    """One failed object, as a target records it (``{"obj_name", "msg", "ecode"}``, §10.2)."""

    obj_name: str
    msg: str
    ecode: int = 0

    def as_dict(self) -> dict[str, str | int]:
        """The JSON shape a proxy returns in ``obj_errors``."""
        return {"obj_name": self.obj_name, "msg": self.msg, "ecode": self.ecode}


def etl_error_message(status: int, body: bytes) -> str:
    """The message a target records for an ETL's error status (404 → ``object not found``)."""
    if status == 404:
        return MSG_NOT_FOUND
    return "ETL error: " + body.decode("utf-8", "replace")


def ais_error_body(
    message: str, status: int, method: str, url_path: str, remote_addr: str, node: str
) -> bytes:
    """An AIS JSON error body (``cmn.ErrHTTP``)."""
    return json.dumps(
        {
            "message": message,
            "method": method,
            "url_path": url_path,
            "remote_addr": remote_addr,
            "caller": "",
            "node": node,
            "status": status,
        },
        separators=(",", ":"),
    ).encode()


def go_status_text(status: int) -> str:
    """Go's ``http.StatusText`` for the statuses a target reports."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def retriable_status_message(status: int) -> str:
    """The error a target keeps after exhausting retries of the 503 contract."""
    return f"{status} {go_status_text(status)}: retriable soft error"


def go_client_error(method: str, url: str, reason: str) -> str:
    """A Go ``*url.Error`` text: ``Put "http://...": <reason>``."""
    op = method[:1].upper() + method[1:].lower()
    return f"{op} {go_quote(url)}: {reason}"


# --- timing and placement ---------------------------------------------------------------------


def retry_sleeps(
    retries: int = 10, sleep: float = 1.0, cap: float = 5.0, scale: float = 1.0
) -> list[float]:
    """Sleeps between a target's attempts (§5.4): 1, 1.5, 2, ... capped, times ``scale``."""
    sleeps: list[float] = []
    current = sleep
    for attempt in range(retries):
        if attempt:
            current = min(current + sleep / 2, cap)
        sleeps.append(current * scale)
    return sleeps


def stable_owner(uname: str, target_ids: Sequence[str]) -> int:
    """Index of the target that owns ``uname``: highest random weight (HRW) over target IDs."""
    best, best_weight = 0, -1
    for index, tid in enumerate(target_ids):
        digest = hashlib.blake2b(f"{tid}\x00{uname}".encode("utf-8", "surrogateescape"))
        weight = int.from_bytes(digest.digest()[:8], "big")
        if weight > best_weight:
            best, best_weight = index, weight
    return best


def new_secret() -> str:
    """A fresh ETL secret: 10 random ASCII letters."""
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(10))


def new_job_id() -> str:
    """A job ID shaped like AIStore's (letters and digits, starting with a letter)."""
    return secrets.choice(string.ascii_letters) + "".join(
        secrets.choice(_ID_ALPHABET) for _ in range(9)
    )
