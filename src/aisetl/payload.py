"""A server class as an environment variable: ``ETL_CLASS_PAYLOAD`` (PROTOCOL.md §12).

The payload is standard base64 (with ``=`` padding) of the class pickled by cloudpickle, as
the ``aistore`` SDK's ``init_class`` sends it. This module holds what both sides agree on:
the variable names, the Python versions the runtime image is built for, how a package list is
joined and split, and the encoding and decoding themselves.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

#: The variables of the runtime contract (§12.1-12.3) and aisetl's two additions.
CLASS_PAYLOAD = "ETL_CLASS_PAYLOAD"
CLASS_SPEC = "ETL_CLASS"
PACKAGES = "PACKAGES"
OS_PACKAGES = "OS_PACKAGES"
DIRECT_FQN = "ETL_DIRECT_FQN"
#: Python minor version and aisetl version the payload was pickled with (set by aisetl.deploy).
PAYLOAD_PYTHON = "AISETL_PAYLOAD_PYTHON"
PAYLOAD_AISETL = "AISETL_PAYLOAD_AISETL"

#: Python versions the runtime image is built for (``--build-arg PYTHON=...``).
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
#: Linux caps one environment string (``NAME=value`` and its NUL) at 32 pages (MAX_ARG_STRLEN).
ENV_STRING_LIMIT = 128 * 1024

_VERSION_OPERATORS = ("<", ">", "=", "!", "~")


class PayloadError(ValueError):
    """The payload cannot be made or used; the message says why and what to do."""


def python_version() -> str:
    """This interpreter's ``major.minor``, e.g. ``3.12``."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def join_packages(items: Iterable[str]) -> str:
    """The comma-joined list of ``PACKAGES`` / ``OS_PACKAGES`` (empty items dropped)."""
    return ",".join(item.strip() for item in items if item.strip())


def split_packages(text: str) -> list[str]:
    """Items of a comma-separated package list, trimmed.

    A comma inside a version specifier stays in its item: ``numpy>=1.24,<2,pillow`` is
    ``["numpy>=1.24,<2", "pillow"]`` (a piece that starts with a version operator continues
    the item before it).
    """
    items: list[str] = []
    for piece in (part.strip() for part in text.split(",")):
        if not piece:
            continue
        if items and piece.startswith(_VERSION_OPERATORS):
            items[-1] += "," + piece
        else:
            items.append(piece)
    return items


def env_string_size(name: str, value: str) -> int:
    """Bytes the kernel counts for ``name=value`` in a new process's environment."""
    return len(name.encode()) + 1 + len(value.encode()) + 1


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - a base dependency of aisetl
        raise PayloadError("cloudpickle is not installed: pip install cloudpickle") from None
    return cloudpickle


def encode_class(cls: type, by_value: Sequence[ModuleType | str] | None = None) -> str:
    """base64(cloudpickle(cls)): the ``ETL_CLASS_PAYLOAD`` value.

    cloudpickle stores a class from an importable module by reference (module and name),
    which the runtime cannot import unless that module is in the image. ``by_value`` lists
    the modules whose code travels in the payload instead; by default the class's own module
    (nothing for ``__main__``, which cloudpickle always pickles by value). Give ``[]`` for a
    class whose module is installed in the image.
    """
    cloudpickle = _cloudpickle()
    if by_value is None:
        own = sys.modules.get(cls.__module__)
        by_value = [own] if own is not None and cls.__module__ != "__main__" else []
    modules: list[ModuleType] = []
    for item in by_value:
        if isinstance(item, str):
            if item not in sys.modules:
                raise PayloadError(f"module {item!r} is not imported: import it first")
            item = sys.modules[item]
        modules.append(item)
    for module in modules:
        if module.__name__ == "aisetl" or module.__name__.startswith("aisetl."):
            raise PayloadError(
                f"{module.__name__} is part of aisetl, which the runtime image has: "
                "do not pickle it by value"
            )
    registered: list[ModuleType] = []
    try:
        for module in modules:
            if module.__name__ not in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
        pickled: bytes = cloudpickle.dumps(cls)
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)
    return base64.b64encode(pickled).decode("ascii")


def decode_bytes(text: str) -> bytes:
    """The pickle inside a payload; :class:`PayloadError` if it is empty or not base64."""
    stripped = text.strip()
    if not stripped:
        raise PayloadError(
            f"{CLASS_PAYLOAD} is empty: it must hold a server class pickled by cloudpickle and "
            "base64-encoded (aisetl.deploy and `aisetl spec init --runtime` write it)"
        )
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError(
            f"{CLASS_PAYLOAD} is not valid base64 ({exc}): it must be standard base64 with "
            "'=' padding, as aisetl.deploy writes it"
        ) from None


def decode_class(pickled: bytes) -> object:
    """Unpickle a payload's bytes; :class:`PayloadError` says what the image lacks."""
    _cloudpickle()  # the pickle calls functions of cloudpickle's
    import pickle

    here = python_version()
    try:
        return pickle.loads(pickled)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing.split(".")[0] == "aistore":
            raise PayloadError(
                f"{CLASS_PAYLOAD} holds a class built on the aistore SDK (it needs module "
                f"{missing!r}): this runtime starts aisetl classes; change the import to "
                "aisetl (from aisetl import FastAPIServer) or use the aistore runtime image"
            ) from None
        raise PayloadError(
            f"{CLASS_PAYLOAD} needs module {missing!r}, which this image does not have: add its "
            f"package to {PACKAGES} (dependencies=[...]), or pickle the module by value"
        ) from None
    except Exception as exc:
        raise PayloadError(
            f"cannot unpickle {CLASS_PAYLOAD} ({type(exc).__name__}: {exc}): it must be made by "
            f"cloudpickle on Python {here}, the version this image runs"
        ) from None
