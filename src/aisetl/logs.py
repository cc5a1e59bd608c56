"""Logs an operator can search: one line per record, text (default) or JSON, secrets redacted.

``AISETL_LOG_FORMAT=json`` writes one JSON object per line: ``time``, ``level``, ``logger``,
``message``, ``pid`` and, for a record about one object, ``object``, ``comm``, ``status``,
``duration`` (seconds), ``bytes_in``, ``bytes_out`` and ``error``; a traceback goes in
``exception``. uvicorn's and gunicorn's loggers are sent through the same handler, so their
lines look like ours. The ETL secret of ``AIS_TARGET_URL`` is replaced by ``***`` in every
line, whichever format and whoever logged it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from aisetl.config import LOG_JSON, Settings
from aisetl.outbound import redact_url
from aisetl.protocol import ETL_OBJECT_PATH

TEXT_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
#: Fields a record about one object carries (``extra=`` of the logging call).
OBJECT_FIELDS = ("object", "comm", "status", "duration", "bytes_in", "bytes_out", "error")
#: Loggers of the servers we run on: their records go through our handler.
FRAMEWORK_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn.error",
    "gunicorn.access",
)
_MIN_SECRET = 6


def target_secret(target_url: str) -> str | None:
    """The ETL secret in ``AIS_TARGET_URL`` (``.../v1/etl/_object/<name>/<secret>``), if any."""
    path = urlsplit(target_url).path
    if ETL_OBJECT_PATH not in path:
        return None
    secret = path.rstrip("/").rsplit("/", 1)[-1]
    return secret if len(secret) >= _MIN_SECRET else None


class Redactor:
    """Hides ETL secrets: in any ``/v1/etl/_object/<name>/<secret>`` URL, and this pod's own."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret

    def __call__(self, text: str) -> str:
        text = redact_url(text)
        if self._secret and self._secret in text:
            text = text.replace(self._secret, "***")
        return text


class TextFormatter(logging.Formatter):
    """The human-readable line (the default), redacted."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, redacted."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._redact(record.getMessage()),
            "pid": record.process,
        }
        for name in OBJECT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = self._redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = self._redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self._redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self._redact(self.formatStack(record.stack_info))
        # values are redacted one by one: a pattern run over the JSON text could cut it
        return json.dumps(entry, ensure_ascii=False, default=str)


class _RedactRecords(logging.Filter):
    """For handlers we did not install: redact a record's message and traceback in place."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True


def formatter(settings: Settings) -> logging.Formatter:
    """The formatter ``AISETL_LOG_FORMAT`` asks for."""
    redact = Redactor(target_secret(settings.target_url))
    return JsonFormatter(redact) if settings.log_format == LOG_JSON else TextFormatter(redact)


def configure(settings: Settings) -> None:
    """Send every record (ours, uvicorn's, gunicorn's) to stdout in the configured format.

    A root logger that already has handlers someone else installed keeps them; they get a
    filter that redacts the secret.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_aisetl", False)]
    others = [h for h in root.handlers if not getattr(h, "_aisetl", False)]
    if others and not ours:
        redact = Redactor(target_secret(settings.target_url))
        for handler in others:
            if not any(isinstance(f, _RedactRecords) for f in handler.filters):
                handler.addFilter(_RedactRecords(redact))
        return
    handler = ours[0] if ours else logging.StreamHandler(sys.stdout)
    handler._aisetl = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter(settings))
    if not ours:
        root.addHandler(handler)
    if root.level == logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    for name in FRAMEWORK_LOGGERS:
        adopt(logging.getLogger(name))
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception


def traceback_of(failure: BaseException | None) -> BaseException | None:
    """What to log a traceback of for a failure: the unexpected exception a transform raised."""
    from aisetl.server import TransformError

    cause = failure.__cause__ if failure is not None else None
    return cause if cause is not None and not isinstance(cause, TransformError) else None


def adopt(logger: logging.Logger) -> None:
    """Route a framework's logger through the root handler (drop its own handlers)."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("aisetl").error(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
    )
