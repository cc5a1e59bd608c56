"""Find a user's server class from ``module:Class`` or a file path, and bind it to a framework."""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import textwrap
from types import ModuleType

from aisetl.server import ETLServer

#: Framework names accepted by ``--server``, and the module and class that implement each.
FRAMEWORKS = {
    "http": ("aisetl.http_multi_threaded_server", "HTTPMultiThreadedServer"),
    "flask": ("aisetl.flask_server", "FlaskServer"),
    "fastapi": ("aisetl.fastapi_server", "FastAPIServer"),
}


class LoadError(Exception):
    """The server class cannot be found or used; the message says what to change."""


def framework_class(name: str) -> type[ETLServer]:
    """The aisetl server class for a framework name (``http``, ``flask``, ``fastapi``)."""
    if name not in FRAMEWORKS:
        raise LoadError(f"unknown server {name!r}: choose one of {', '.join(FRAMEWORKS)}")
    module_name, class_name = FRAMEWORKS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = "fastapi" if name == "fastapi" else "flask"
        raise LoadError(
            f"the {name} server needs extra packages ({exc.name} is missing): "
            f"pip install 'aisetl[{extra}]'"
        ) from None
    cls: type[ETLServer] = getattr(module, class_name)
    return cls


def _import_file(path: str) -> ModuleType:
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise LoadError(f"no such file: {path}")
    name = os.path.splitext(os.path.basename(full))[0] or "etl_server"
    folder = os.path.dirname(full)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise LoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> ModuleType:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise LoadError(f"no module named {name!r} (is it on PYTHONPATH?)") from None
        raise LoadError(f"importing {name} failed: {exc}") from exc
    except Exception as exc:
        raise LoadError(f"importing {name} failed: {type(exc).__name__}: {exc}") from exc


def _overrides_transform(cls: type[ETLServer]) -> bool:
    return (
        cls.transform is not ETLServer.transform
        or cls.transform_stream is not ETLServer.transform_stream
        or cls.transform_batch is not ETLServer.transform_batch
    )


def _server_classes(module: ModuleType) -> list[type[ETLServer]]:
    """Server classes defined (not imported) in ``module`` that implement a transform."""
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, ETLServer)
        and obj.__module__ == module.__name__
        and _overrides_transform(obj)
    ]


def load_server_class(spec: str) -> type[ETLServer]:
    """Load ``module:Class``, ``path/to/file.py[:Class]`` or a module with one server class."""
    target, _, class_name = spec.partition(":")
    if target.endswith(".py") or os.sep in target:
        module = _import_file(target)
    else:
        module = _import_module(target)
    if class_name:
        obj = getattr(module, class_name, None)
        if obj is None:
            raise LoadError(
                f"{module.__name__} has no attribute {class_name!r}"
                + _existing_classes(module, class_name)
            )
        if not (inspect.isclass(obj) and issubclass(obj, ETLServer)):
            raise LoadError(f"{spec} is not a subclass of aisetl.ETLServer")
        check_server_class(obj)
        return obj
    found = _server_classes(module)
    if not found:
        raise LoadError(
            f"{spec} defines no server class: subclass aisetl.ETLServer (or FastAPIServer, "
            "FlaskServer, HTTPMultiThreadedServer) and override transform()"
        )
    if len(found) > 1:
        names = ", ".join(sorted(cls.__name__ for cls in found))
        raise LoadError(
            f"{spec} defines several server classes ({names}): name one as {target}:CLASS"
        )
    check_server_class(found[0])
    return found[0]


def _existing_classes(module: ModuleType, wanted: str) -> str:
    """``: its server classes are A, B (did you mean 'A'?)`` for a wrong ``module:Class``."""
    servers = sorted(cls.__name__ for cls in _server_classes(module))
    if not servers:
        return ": it defines no server class (subclass aisetl.ETLServer and override transform)"
    close = difflib.get_close_matches(wanted, servers, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f": its server classes are {', '.join(servers)}{hint}"


#: What each transform method is called with, after ``self``.
_CALLS = {
    "transform": ("data", "path", "etl_args", "def transform(self, data, path, etl_args)"),
    "transform_stream": (
        "reader",
        "path",
        "etl_args",
        "def transform_stream(self, reader, path, etl_args)",
    ),
}


def check_server_class(cls: type[ETLServer]) -> None:
    """Refuse, with the fix, what would only fail later: a wrong signature, a missing super()."""
    for method, (*args, fixed) in _CALLS.items():
        func = getattr(cls, method)
        if func is getattr(ETLServer, method):
            continue
        try:
            inspect.signature(func).bind(None, *args)
        except TypeError:
            raise LoadError(
                f"{cls.__name__}.{method}{inspect.signature(func)} cannot be called as "
                f"{method}({', '.join(args)}): write `{fixed}:` (any names, three arguments "
                "after self)"
            ) from None
        except ValueError:  # no signature to inspect (a builtin): nothing to check
            continue
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] == "aisetl" or "__init__" not in vars(klass):
            continue
        if _calls_base_init(vars(klass)["__init__"]) is False:
            raise LoadError(
                f"{klass.__name__}.__init__ does not call super().__init__(): add "
                "`super().__init__()` as its first line (on FastAPIServer, FlaskServer or "
                "HTTPMultiThreadedServer: `super().__init__(host, port)`), which sets up the "
                "server's settings, logger and framework"
            )


def _calls_base_init(init: object) -> bool | None:
    """Whether ``init``'s source calls some ``__init__`` (``None`` when it cannot be read)."""
    try:
        source = textwrap.dedent(inspect.getsource(init))  # type: ignore[arg-type]
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "__init__"
        for node in ast.walk(tree)
    )


def framework_of(cls: type[ETLServer]) -> str | None:
    """Which framework a class is already bound to, if any."""
    names = [cls_.__name__ for cls_ in cls.__mro__]
    for name, (_, class_name) in FRAMEWORKS.items():
        if class_name in names:
            return name
    return None


def bind_framework(cls: type[ETLServer], server: str | None) -> type[ETLServer]:
    """A class that runs ``cls``'s transform on the chosen framework.

    A class derived from plain :class:`ETLServer` can run on any framework; one derived from a
    framework server runs on that one (``server`` may repeat it or be left out).
    """
    bound = framework_of(cls)
    if bound is not None:
        if server is not None and server != bound:
            raise LoadError(
                f"{cls.__name__} is built on the {bound} server: "
                f"drop --server or pass --server {bound}"
            )
        return cls
    base = framework_class(server or "fastapi")
    return type(
        cls.__name__, (base, cls), {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    )
