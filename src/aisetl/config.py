"""Settings read once from the environment, validated, with errors that say what to fix."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from aisetl.protocol import parse_bool

_SIZE_SUFFIXES = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


class ConfigError(EnvironmentError):
    """An environment variable is missing or has a value the server cannot use."""


def parse_size(name: str, value: str) -> int:
    """Parse a byte size such as ``1048576``, ``64KiB`` or ``1.5GB``; 0 means "no limit"."""
    text = value.strip().lower().replace(" ", "")
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    suffix = text[len(number) :]
    if suffix not in _SIZE_SUFFIXES or not number:
        raise ConfigError(f"{name}={value!r} is not a size: use bytes or e.g. 64KiB, 16MiB, 1GB")
    try:
        size = float(number) * _SIZE_SUFFIXES[suffix]
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a size: use e.g. 64KiB, 16MiB, 1GB") from None
    if size < 0:
        raise ConfigError(f"{name}={value!r} must not be negative")
    return int(size)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


_FALSY = ("0", "f", "false", "n", "no", "off")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in _FALSY:
        return False
    if parse_bool(raw):
        return True
    raise ConfigError(f"{name}={raw!r} is not a boolean: use true or false")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    return tuple(item.strip() for item in raw.replace(":", ",").split(",") if item.strip())


def _concurrency(env: Mapping[str, str]) -> int | None:
    raw = env.get("AISETL_TRANSFORM_CONCURRENCY", "").strip().lower()
    if raw in ("", "auto"):
        return None
    return _int(env, "AISETL_TRANSFORM_CONCURRENCY", 1, minimum=1)


def parse_gpus(env: Mapping[str, str]) -> str:
    """``AISETL_GPUS`` checked and normalized: "", "auto", "none" or "0,1,..."."""
    raw = env.get("AISETL_GPUS", "").strip().lower().replace(" ", "")
    if raw in ("", "auto", "none"):
        return raw
    ids = raw.split(",")
    if not all(ids):
        raise ConfigError(
            f"AISETL_GPUS={raw!r}: use 'auto', 'none' or GPU indices or UUIDs such as 0,1"
        )
    return ",".join(ids)


#: How a WebSocket task failure is reported (PROTOCOL.md §7.4 has no error channel).
WS_ERRORS_TEXT = "text"
WS_ERRORS_CLOSE = "close"
#: Log formats (``AISETL_LOG_FORMAT``).
LOG_TEXT = "text"
LOG_JSON = "json"
#: A failed task whose result was headed for another target gets an empty binary message.
WS_ERRORS_BINARY = "binary"
WS_ERRORS = (WS_ERRORS_TEXT, WS_ERRORS_CLOSE, WS_ERRORS_BINARY)


@dataclass(frozen=True)
class Settings:
    """Everything a server reads from its environment (PROTOCOL.md §2.2, plus aisetl's own).

    ``AIS_DIRECT_PUT_CHUNK_SIZE`` is accepted and not needed: a buffered result is sent as
    one body, a streamed one in the transform's own chunks.
    """

    target_url: str
    direct_put: bool = False
    direct_fqn: bool = False
    direct_put_retries: int = 3
    authn_token: str | None = None
    skip_verify: bool = False
    client_ca: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    max_connections: int = 256
    max_keepalive_connections: int = 128
    keepalive_expiry: float = 30.0
    num_workers: int | None = None
    # aisetl's own settings (AISETL_*)
    retry_backoff: float = 1.0
    hop_connect_timeout: float = 10.0
    hop_read_timeout: float = 600.0
    fqn_allow: tuple[str, ...] = ()
    hop_allow: tuple[str, ...] = ()
    max_body_size: int = 0
    threads: int = 128
    transform_concurrency: int | None = None  # None: learned (see aisetl.limiter)
    grace_period: float = 25.0
    keepalive_timeout: float = 75.0
    header_timeout: float = 5.0  # 0: no header-read deadline
    ws_errors: str = WS_ERRORS_TEXT
    ws_inflight: int = 128
    ws_frames: bool = True
    inline_max_bytes: int = 1024 * 1024
    # operations (AISETL_METRICS, AISETL_LOG_FORMAT, AISETL_ACCESS_LOG, AISETL_OBJ_TIMEOUT,
    # AISETL_MAX_INFLIGHT_BYTES)
    metrics: bool = True
    log_format: str = LOG_TEXT
    access_log: bool = False
    obj_timeout: float = 0.0  # seconds; 0: no deadline
    max_inflight_bytes: int | None = None  # None: derived from the memory limit; 0: no bound
    async_concurrency: int = 256  # async transforms awaited at once per worker
    max_batch_size: int | None = None  # None: the class's own (see aisetl.batch)
    max_batch_delay: float | None = None
    batch_concurrency: int | None = None  # batches running at once per worker
    gpus: str = ""  # AISETL_GPUS as given ("", "auto" or "0,1,..."); see aisetl.gpus

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raise :class:`ConfigError` naming the bad variable."""
        env = os.environ if env is None else env
        target_url = env.get("AIS_TARGET_URL", "").strip()
        if not target_url:
            raise ConfigError(
                "Environment variable 'AIS_TARGET_URL' must be set: AIStore sets it in the ETL "
                "container; for a local run use `aisetl run` or `aisetl.testing`, which set it"
            )
        if not target_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"AIS_TARGET_URL must start with http:// or https://, not {target_url[:8]!r}..."
            )
        skip = env.get("AIS_SKIP_VERIFY_CRT")
        if skip is None:
            skip = env.get("AIS_SKIP_VERIFY")
        ws_errors = env.get("AISETL_WS_ERRORS", WS_ERRORS_TEXT).strip().lower() or WS_ERRORS_TEXT
        if ws_errors not in WS_ERRORS:
            raise ConfigError(f"AISETL_WS_ERRORS={ws_errors!r}: use 'text', 'close' or 'binary'")
        cert, key = env.get("AIS_CRT") or None, env.get("AIS_CRT_KEY") or None
        workers_raw = env.get("NUM_WORKERS", "").strip()
        max_body = env.get("AISETL_MAX_BODY_SIZE", "").strip()
        inline_max = env.get("AISETL_INLINE_MAX_BYTES", "").strip()
        log_format = env.get("AISETL_LOG_FORMAT", "").strip().lower() or LOG_TEXT
        if log_format not in (LOG_TEXT, LOG_JSON):
            raise ConfigError(
                f"AISETL_LOG_FORMAT={log_format!r}: use 'text' (the default) or 'json'"
            )
        inflight = env.get("AISETL_MAX_INFLIGHT_BYTES", "").strip()
        batch_size = env.get("AISETL_MAX_BATCH_SIZE", "").strip()
        batch_delay = env.get("AISETL_MAX_BATCH_DELAY", "").strip()
        batch_conc = env.get("AISETL_BATCH_CONCURRENCY", "").strip()
        return cls(
            target_url=target_url.rstrip("/"),
            # The target sets the lower-case name; the reference reads the upper-case one.
            direct_put=parse_bool(env.get("direct_put", env.get("DIRECT_PUT"))),
            direct_fqn=parse_bool(env.get("ETL_DIRECT_FQN")),
            direct_put_retries=_int(env, "AIS_DIRECT_PUT_RETRIES", 3),
            authn_token=env.get("AIS_AUTHN_TOKEN") or None,
            skip_verify=parse_bool(skip),
            client_ca=env.get("AIS_CLIENT_CA") or None,
            client_cert=cert if cert and key else None,
            client_key=key if cert and key else None,
            max_connections=_int(env, "MAX_CONN", 256, minimum=1),
            max_keepalive_connections=_int(env, "MAX_KEEPALIVE_CONN", 128, minimum=1),
            keepalive_expiry=_seconds(env, "KEEPALIVE_EXPIRY", 30.0),
            num_workers=_int(env, "NUM_WORKERS", 1, minimum=1) if workers_raw else None,
            retry_backoff=_seconds(env, "AISETL_RETRY_BACKOFF", 1.0),
            hop_connect_timeout=_seconds(env, "AISETL_HOP_CONNECT_TIMEOUT", 10.0, 0.001),
            hop_read_timeout=_seconds(env, "AISETL_HOP_READ_TIMEOUT", 600.0, 0.001),
            fqn_allow=_list(env, "AISETL_FQN_ALLOW"),
            hop_allow=_list(env, "AISETL_HOP_ALLOW"),
            max_body_size=parse_size("AISETL_MAX_BODY_SIZE", max_body) if max_body else 0,
            threads=_int(env, "AISETL_THREADS", 128, minimum=1),
            transform_concurrency=_concurrency(env),
            grace_period=_seconds(env, "AISETL_GRACE_PERIOD", 25.0),
            keepalive_timeout=_seconds(env, "AISETL_KEEPALIVE_TIMEOUT", 75.0, 1.0),
            header_timeout=_seconds(env, "AISETL_HEADER_TIMEOUT", 5.0),
            ws_errors=ws_errors,
            ws_inflight=_int(env, "AISETL_WS_INFLIGHT", 128, minimum=1),
            ws_frames=parse_bool(env.get("AISETL_WS_FRAMES", "true")),
            inline_max_bytes=(
                parse_size("AISETL_INLINE_MAX_BYTES", inline_max) if inline_max else 1024 * 1024
            ),
            metrics=_flag(env, "AISETL_METRICS", True),
            log_format=log_format,
            access_log=_flag(env, "AISETL_ACCESS_LOG", False),
            obj_timeout=_seconds(env, "AISETL_OBJ_TIMEOUT", 0.0),
            max_inflight_bytes=(
                parse_size("AISETL_MAX_INFLIGHT_BYTES", inflight) if inflight else None
            ),
            async_concurrency=_int(env, "AISETL_ASYNC_CONCURRENCY", 256, minimum=1),
            max_batch_size=_int(env, "AISETL_MAX_BATCH_SIZE", 1, minimum=1) if batch_size else None,
            max_batch_delay=_seconds(env, "AISETL_MAX_BATCH_DELAY", 0.0) if batch_delay else None,
            batch_concurrency=(
                _int(env, "AISETL_BATCH_CONCURRENCY", 1, minimum=1) if batch_conc else None
            ),
            gpus=parse_gpus(env),
        )
