"""Checks that the private parts of uvicorn and gunicorn that aisetl extends are still there.

aisetl subclasses uvicorn's protocols and gunicorn's threaded worker and relies on methods and
attributes outside their public API. The versions it is tested with are the bounds declared in
``pyproject.toml``. Outside them a part may be gone; then the feature built on it falls back,
and :func:`warn_missing` says so once, naming the installed version and what is lost.
"""

from __future__ import annotations

import dis
import re
import types
import warnings
from collections.abc import Iterable, Sequence
from importlib import metadata

#: A requirement as metadata writes it: name, optional [extras], versions, optional ; marker.
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*([^;]*)")


class DependencyWarning(RuntimeWarning):
    """An installed dependency lacks a part that aisetl extends: a feature falls back."""


def missing(
    cls: type,
    methods: Iterable[str] = (),
    attributes: Iterable[str] = (),
    not_from: type = object,
) -> list[str]:
    """What ``cls`` lacks, as ``Class.name``.

    ``methods`` must be callables defined by ``cls`` or a base other than ``not_from`` and its
    bases (``asyncio.Protocol``'s empty ``pause_writing`` is not uvicorn's); ``attributes``
    class attributes, or attributes that the code of the class or a base sets.
    """
    generic = set(not_from.__mro__)
    lacking = [
        name
        for name in methods
        if not any(callable(vars(klass).get(name)) for klass in cls.__mro__ if klass not in generic)
    ]
    stored = stored_attributes(cls)
    lacking += [name for name in attributes if name not in stored and not hasattr(cls, name)]
    return [f"{cls.__name__}.{name}" for name in lacking]


def stored_attributes(cls: type) -> frozenset[str]:
    """The attribute names that functions of ``cls`` and its bases assign (``self.x = ...``)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        for member in vars(klass).values():
            function = getattr(member, "__func__", member)  # classmethod, staticmethod
            code = getattr(function, "__code__", None)
            if isinstance(code, types.CodeType):
                names |= _stores(code)
    return frozenset(names)


def _stores(code: types.CodeType) -> set[str]:
    found = {ins.argval for ins in dis.get_instructions(code) if ins.opname == "STORE_ATTR"}
    for const in code.co_consts:  # nested functions, comprehensions
        if isinstance(const, types.CodeType):
            found |= _stores(const)
    return found


def warn_missing(package: str, lacking: Sequence[str], lost: str) -> bool:
    """Warn once that ``package`` lacks ``lacking`` and that ``lost`` follows; True if it does."""
    if not lacking:
        return False
    tested = declared_range(package)
    warnings.warn(
        f"{package} {installed_version(package)} lacks {', '.join(lacking)}: {lost}. "
        f"aisetl is tested with {package}{tested or ' as pinned in its lock file'}.",
        DependencyWarning,
        stacklevel=2,
    )
    return True


def installed_version(package: str) -> str:
    """The installed version of ``package``, or ``(version unknown)``."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def declared_range(package: str) -> str:
    """The version range aisetl declares for ``package`` (e.g. ``>=0.52.1,<0.55``), or ``""``."""
    try:
        declared = metadata.requires("aisetl") or []
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return ""
    for text in declared:
        match = _REQUIREMENT.match(text)
        if match and _normalize(match.group(1)) == _normalize(package):
            specs = [spec.strip() for spec in match.group(2).split(",") if spec.strip()]
            return ",".join(sorted(specs, key=lambda spec: not spec.startswith(">")))
    return ""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
