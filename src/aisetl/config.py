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


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    return tuple(item.strip() for item in raw.replace(":", ",").split(",") if item.strip())


def _concurrency(env: Mapping[str, str]) -> int | None:
    raw = env.get("AISETL_TRANSFORM_CONCURRENCY", "").strip().lower()
    if raw in ("", "auto"):
        return None
    return _int(env, "AISETL_TRANSFORM_CONCURRENCY", 1, minimum=1)


#: How a WebSocket task failure is reported (PROTOCOL.md §7.4 has no error channel).
WS_ERRORS_TEXT = "text"
WS_ERRORS_CLOSE = "close"
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
    ws_inflight: int = 16
    ws_frames: bool = True
    inline_max_bytes: int = 1024 * 1024

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
            ws_inflight=_int(env, "AISETL_WS_INFLIGHT", 16, minimum=1),
            ws_frames=parse_bool(env.get("AISETL_WS_FRAMES", "true")),
            inline_max_bytes=(
                parse_size("AISETL_INLINE_MAX_BYTES", inline_max) if inline_max else 1024 * 1024
            ),
        )
