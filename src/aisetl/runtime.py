"""``aisetl runtime``: what the runtime image runs (PROTOCOL.md §12.2 and §12.3).

1. raise the open-file limit; find the class: ``ETL_CLASS_PAYLOAD`` (base64 of a cloudpickled
   class) or ``ETL_CLASS`` (``module:Class`` of code already in the image);
2. refuse a payload pickled on another Python minor version (``AISETL_PAYLOAD_PYTHON``);
3. ``pip install`` each of ``PACKAGES``, then ``OS_PACKAGES`` with ``apk`` or ``apt-get``;
4. unpickle or import the class, check it is an aisetl server, construct it once;
5. serve it in this process on its framework, as ``aisetl serve`` does (worker processes fork
   from it, so the unpickled class needs no importable module).

Every failure is one line on stderr (the last of the container log, which AIStore shows as the
ETL's error) and exit status 1.
"""

from __future__ import annotations

import inspect
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass

from aisetl import __version__, payload
from aisetl.config import ConfigError
from aisetl.loader import LoadError, bind_framework, framework_of, load_server_class
from aisetl.packages import InstallError, os_install, pip_install
from aisetl.protocol import DEFAULT_PORT
from aisetl.server import ETLServer, _raise_nofile_limit

PREFIX = "aisetl runtime"


class RuntimeFailure(Exception):
    """The server cannot start; the message is the one line the runtime prints."""


@dataclass(frozen=True)
class Options:
    """Where and how to serve (the image's defaults: 0.0.0.0:8000, ``NUM_WORKERS``)."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    framework: str | None = None  # for a class built on plain ETLServer (default fastapi)
    workers: int | None = None  # default: NUM_WORKERS, else 1


@dataclass(frozen=True)
class ClassSource:
    """Where the class comes from: the bytes of a payload, or ``module:Class``."""

    pickled: bytes | None = None
    spec: str | None = None

    def describe(self) -> str:
        """``ETL_CLASS_PAYLOAD`` or ``ETL_CLASS=module:Class``, for messages."""
        return payload.CLASS_PAYLOAD if self.spec is None else f"{payload.CLASS_SPEC}={self.spec}"


def say(message: str) -> None:
    """A progress line in the container log."""
    print(f"{PREFIX}: {message}", flush=True)


def class_source(env: Mapping[str, str]) -> ClassSource:
    """The class named by the environment (a payload is decoded here, unpickled later)."""
    raw = env.get(payload.CLASS_PAYLOAD)
    spec = env.get(payload.CLASS_SPEC, "").strip()
    if spec:
        if raw is not None and raw.strip():
            raise RuntimeFailure(
                f"both {payload.CLASS_PAYLOAD} and {payload.CLASS_SPEC} are set: set only one "
                "(the payload aisetl.deploy sends, or module:Class of code in your image)"
            )
        return ClassSource(spec=spec)
    if raw is None:
        raise RuntimeFailure(
            f"no server class: set {payload.CLASS_PAYLOAD} (aisetl.deploy.init_class or "
            f"`aisetl spec init --runtime` write it) or {payload.CLASS_SPEC}=module:Class"
        )
    try:
        return ClassSource(pickled=payload.decode_bytes(raw))
    except payload.PayloadError as exc:
        raise RuntimeFailure(str(exc)) from None


def check_versions(env: Mapping[str, str]) -> None:
    """Refuse a payload pickled on another Python minor version; note another aisetl."""
    here = payload.python_version()
    pickled_on = env.get(payload.PAYLOAD_PYTHON, "").strip()
    if pickled_on and pickled_on != here:
        raise RuntimeFailure(
            f"the class was pickled on Python {pickled_on} but this image runs Python {here}: "
            f"build the runtime image with --build-arg PYTHON={pickled_on} and deploy with it, "
            f"or deploy from Python {here}"
        )
    made_with = env.get(payload.PAYLOAD_AISETL, "").strip()
    if made_with and made_with != __version__:
        say(f"note: the class was pickled with aisetl {made_with}; this image has {__version__}")


def install(env: Mapping[str, str]) -> None:
    """``PACKAGES`` with pip, then ``OS_PACKAGES`` (the reference's order)."""
    requirements = payload.split_packages(env.get(payload.PACKAGES, ""))
    system = payload.split_packages(env.get(payload.OS_PACKAGES, ""))
    for variable, items, installer in (
        (payload.PACKAGES, requirements, pip_install),
        (payload.OS_PACKAGES, system, os_install),
    ):
        if not items:
            continue
        say(f"installing {variable}: {', '.join(items)}")
        try:
            installer(items)
        except InstallError as exc:
            raise RuntimeFailure(f"{variable}: {exc}") from None


def server_class(obj: object, where: str) -> type[ETLServer]:
    """``obj`` if it is an aisetl server class, else a failure that says what it is."""
    if inspect.isclass(obj) and issubclass(obj, ETLServer):
        return obj
    if inspect.isclass(obj):
        if any(base.__module__.split(".")[0] == "aistore" for base in obj.__mro__):
            raise RuntimeFailure(
                f"{where} holds {obj.__qualname__}, built on the aistore SDK's ETLServer: this "
                "runtime starts aisetl classes (change the import to aisetl)"
            )
        what = f"class {obj.__qualname__}"
    else:
        what = f"an object of type {type(obj).__name__}"
    raise RuntimeFailure(
        f"{where} holds {what}, not an aisetl server class: subclass aisetl.FastAPIServer, "
        "FlaskServer, HTTPMultiThreadedServer or ETLServer and override transform()"
    )


def load(source: ClassSource) -> type[ETLServer]:
    """Unpickle or import the class; it must implement a transform."""
    if source.spec is not None:
        try:
            cls = load_server_class(source.spec)
        except LoadError as exc:
            raise RuntimeFailure(f"{source.describe()}: {exc}") from None
    else:
        assert source.pickled is not None
        try:
            obj = payload.decode_class(source.pickled)
        except payload.PayloadError as exc:
            raise RuntimeFailure(str(exc)) from None
        cls = server_class(obj, source.describe())
    if cls.transform is ETLServer.transform and cls.transform_stream is ETLServer.transform_stream:
        raise RuntimeFailure(
            f"{source.describe()}: {cls.__qualname__} must override transform() or "
            "transform_stream()"
        )
    return cls


def _takes_address(cls: type[ETLServer]) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return "host" in params and "port" in params


def build(cls: type[ETLServer], options: Options) -> ETLServer:
    """Bind ``cls`` to its framework and construct it once (this runs its ``__init__``)."""
    try:
        bound = bind_framework(cls, options.framework)
    except LoadError as exc:
        raise RuntimeFailure(str(exc)) from None
    name = cls.__qualname__
    try:
        if _takes_address(bound):
            server = bound(host=options.host, port=options.port)  # type: ignore[call-arg]
        else:  # a reference-style __init__(self): the address is set afterwards
            server = bound()
            server.host = options.host  # type: ignore[attr-defined]
            server.port = options.port  # type: ignore[attr-defined]
    except ConfigError as exc:
        raise RuntimeFailure(f"{name}: {exc}") from None
    except Exception as exc:
        traceback.print_exc()
        raise RuntimeFailure(f"{name}() failed: {type(exc).__name__}: {exc}") from None
    return server


def start(options: Options, env: Mapping[str, str] | None = None) -> None:
    """Every step; returns when the server stops, raises :class:`RuntimeFailure`."""
    env = os.environ if env is None else env
    _raise_nofile_limit()
    source = class_source(env)
    if source.pickled is not None:
        check_versions(env)
    install(env)
    cls = load(source)
    server = build(cls, options)
    framework = framework_of(type(server)) or "?"
    say(
        f"serving {cls.__qualname__} ({framework}) from {source.describe()} on "
        f"{options.host}:{options.port}; Python {payload.python_version()}, aisetl {__version__}"
    )
    try:
        server.start(workers=options.workers)  # type: ignore[call-arg]
    except OSError as exc:
        raise RuntimeFailure(exc.strerror or str(exc)) from None


def run(options: Options, env: Mapping[str, str] | None = None) -> int:
    """:func:`start`; a failure is one line on stderr and exit status 1."""
    try:
        start(options, env)
    except RuntimeFailure as exc:
        sys.stdout.flush()
        print(f"{PREFIX}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
