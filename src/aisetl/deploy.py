"""Deploy an aisetl class without a Dockerfile: the twin of the ``aistore`` SDK's ``init_class``.

>>> from aistore import Client
>>> from aisetl.deploy import init_class
>>> @init_class(Client("http://ais:8080").etl("upper-etl"), image="reg/aisetl-runtime:{python}")
... class UpperServer(FastAPIServer):
...     def transform(self, data, path, etl_args):
...         return data.upper()

The class is cloudpickled into ``ETL_CLASS_PAYLOAD`` (its own module by value, so it need not
be importable in the image) and started by ``aisetl runtime`` in the runtime image, which you
build once from this repository (docs/deploy.md). The message is sent with your own ``aistore``
client (its ``Etl.init``); aisetl does not depend on ``aistore``. :func:`init_message` gives the
same message without sending it, and ``aisetl spec init --runtime`` writes it as YAML.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any, TypeVar

from aisetl import __version__, payload
from aisetl import comm as comms
from aisetl import spec as specs
from aisetl.loader import framework_of
from aisetl.server import ETLServer

S = TypeVar("S", bound=type[ETLServer])

#: Defaults of ``init_class`` (PROTOCOL.md §12.1): note direct put is on.
DEFAULT_COMM = "hpush"
DEFAULT_INIT_TIMEOUT = "5m"
DEFAULT_OBJ_TIMEOUT = "45s"
#: Replaced by this interpreter's ``major.minor`` in an image name.
PYTHON_PLACEHOLDER = "{python}"

#: Names the runtime reads itself; user variables may not set them.
_RESERVED = (
    payload.CLASS_PAYLOAD,
    payload.CLASS_SPEC,
    payload.PACKAGES,
    payload.OS_PACKAGES,
    payload.DIRECT_FQN,
    payload.PAYLOAD_PYTHON,
    payload.PAYLOAD_AISETL,
)
#: Parameters of the aistore SDK's ``Etl.init``: a variable of that name cannot be passed on.
_INIT_PARAMETERS = (
    "image",
    "command",
    "comm_type",
    "init_timeout",
    "obj_timeout",
    "direct_put",
    "direct_file_access",
)
_TAG_PYTHON = re.compile(r"3\.(\d+)(?=$|[-._])")


class DeployError(ValueError):
    """The class cannot be deployed as asked; the message says why and what to change."""


def image_for(image: str, python: str | None = None) -> str:
    """``image`` with ``{python}`` replaced by ``python`` (default: this interpreter's)."""
    return image.replace(PYTHON_PLACEHOLDER, python or payload.python_version())


def image_python(image: str) -> str | None:
    """The Python version an image's tag names (``reg/aisetl-runtime:3.12-alpine`` -> 3.12)."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _TAG_PYTHON.match(last.split(":", 1)[1])
    return f"3.{match.group(1)}" if match else None


def check_python(image: str, python: str | None = None) -> None:
    """Refuse an image that cannot load a class pickled on ``python`` (default: this one)."""
    here = python or payload.python_version()
    tagged = image_python(image)
    if tagged is not None and tagged != here:
        raise DeployError(
            f"image {image} runs Python {tagged} (its tag) but this class is pickled on Python "
            f"{here}, and a pickled class loads only on the same minor version: use the runtime "
            f"image built with --build-arg PYTHON={here}, or name it with "
            f"{PYTHON_PLACEHOLDER} in its tag"
        )
    if tagged is None and here not in payload.SUPPORTED_PYTHONS:
        supported = ", ".join(payload.SUPPORTED_PYTHONS)
        raise DeployError(
            f"the runtime image is built for Python {supported}, and this class is pickled on "
            f"Python {here}: deploy from one of those, or tag an image you built for {here} "
            f"with its version (e.g. :{here})"
        )


def check_size(name: str, value: str) -> None:
    """Refuse a variable longer than one environment string may be (Linux: 128 KiB)."""
    size = payload.env_string_size(name, value)
    if size > payload.ENV_STRING_LIMIT:
        raise DeployError(
            f"{name} is {size} bytes, more than the {payload.ENV_STRING_LIMIT // 1024} KiB Linux "
            "allows one environment variable, so the container could not start: keep data out "
            "of the class and its module (load models and tables in __init__), or build your "
            "own image (ETL_CLASS=module:Class)"
        )


def _check_class(cls: Any) -> type[ETLServer]:
    if not (isinstance(cls, type) and issubclass(cls, ETLServer)):
        raise DeployError(
            f"{cls!r} is not an aisetl server class: subclass aisetl.FastAPIServer, FlaskServer, "
            "HTTPMultiThreadedServer or ETLServer"
        )
    if cls.transform is ETLServer.transform and cls.transform_stream is ETLServer.transform_stream:
        raise DeployError(f"{cls.__name__} must override transform() or transform_stream()")
    return cls


def _environment(
    encoded: str,
    dependencies: Iterable[str],
    os_packages: Iterable[str],
    direct_file_access: bool,
    env: Mapping[str, Any],
) -> dict[str, str]:
    """``runtime.env`` in the SDK's order, then aisetl's version notes."""
    result = {payload.CLASS_PAYLOAD: encoded}
    packages = payload.join_packages(dependencies)
    if packages:
        result[payload.PACKAGES] = packages
    system = payload.join_packages(os_packages)
    if system:
        result[payload.OS_PACKAGES] = system
    for key, value in env.items():
        if key in _RESERVED:
            raise DeployError(f"{key} is set by init_class itself: do not pass it as a variable")
        if key in _INIT_PARAMETERS:
            raise DeployError(
                f"a variable named {key!r} cannot be passed: it is a parameter of Etl.init"
            )
        result[key] = str(value)
    if direct_file_access:
        result[payload.DIRECT_FQN] = "true"
    result[payload.PAYLOAD_PYTHON] = payload.python_version()
    result[payload.PAYLOAD_AISETL] = __version__
    return result


def init_message(
    cls: type[ETLServer],
    name: str,
    *,
    image: str,
    dependencies: Sequence[str] | None = None,
    os_packages: Sequence[str] | None = None,
    comm_type: str = DEFAULT_COMM,
    init_timeout: str = DEFAULT_INIT_TIMEOUT,
    obj_timeout: str = DEFAULT_OBJ_TIMEOUT,
    direct_put: bool = True,
    direct_file_access: bool = False,
    by_value: Sequence[ModuleType | str] | None = None,
    env: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The runtime spec (the JSON of ``PUT /v1/etl``) that starts ``cls`` in the runtime image.

    Arguments are those of the aistore SDK's ``init_class``; ``image`` is the runtime image
    (``{python}`` is replaced by this interpreter's version), ``env`` the extra variables, and
    ``by_value`` the modules pickled with the class (see :func:`aisetl.payload.encode_class`).
    Raises :class:`DeployError` for a message that could not start.
    """
    cls = _check_class(cls)
    image = image_for(image)
    check_python(image)
    try:
        comm = specs.comm_value(comm_type)
    except ValueError as exc:
        raise DeployError(str(exc)) from None
    chosen = comms.by_spec_value(comm)
    # A plain ETLServer runs on the runtime's default server, which serves every type.
    if chosen is not None and framework_of(cls) is not None:
        reason = comms.unsupported_reason(chosen.name, cls)
        if reason is not None:
            raise DeployError(f"comm_type {chosen.name}: {reason}")
    try:
        encoded = payload.encode_class(cls, by_value)
    except payload.PayloadError as exc:
        raise DeployError(str(exc)) from None
    variables = _environment(
        encoded, dependencies or (), os_packages or (), direct_file_access, env or {}
    )
    with contextlib.suppress(ValueError):  # the pod is not told obj_timeout: its own deadline
        variables.setdefault(specs.DEADLINE_VAR, f"{specs.parse_duration(obj_timeout):g}")
    for key, value in variables.items():
        check_size(key, value)
    message: dict[str, Any] = {
        "name": name,
        "communication": comm,
        "init_timeout": init_timeout,
        "obj_timeout": obj_timeout,
        "support_direct_put": direct_put,
        "runtime": {
            "image": image,
            "env": [{"name": k, "value": v} for k, v in variables.items()],
        },
    }
    try:
        specs.validate(message)
    except specs.SpecError as exc:
        raise DeployError(str(exc)) from None
    return message


def spec_text(message: Mapping[str, Any]) -> str:
    """An init message as ``etl_spec.yaml`` text (for ``ais etl init --spec``)."""
    runtime = message["runtime"]
    return specs.render(
        message["name"],
        runtime["image"],
        comm=message["communication"],
        support_direct_put=message["support_direct_put"],
        init_timeout=message["init_timeout"],
        obj_timeout=message["obj_timeout"],
        env={item["name"]: item["value"] for item in runtime.get("env", [])},
    )


def _etl_of(client: Any, name: str | None) -> Any:
    """The aistore SDK's ``Etl`` for ``client`` (a ``Client`` or already an ``Etl``)."""
    if callable(getattr(client, "init", None)) and isinstance(getattr(client, "name", None), str):
        if name is not None and name != client.name:
            raise DeployError(f"the Etl is named {client.name!r}, not {name!r}")
        return client
    if callable(getattr(client, "etl", None)):
        if name is None:
            raise DeployError("name the ETL: init_class(client, 'my-etl', ...)")
        return client.etl(name)
    raise DeployError(
        f"{client!r} is neither an aistore Client nor an Etl: pass Client(url) or "
        "Client(url).etl(name) (pip install aistore)"
    )


def send(client: Any, message: Mapping[str, Any]) -> str:
    """Send an init message with the aistore SDK's ``Etl.init``; returns the job ID."""
    etl = _etl_of(client, message["name"])
    runtime = message["runtime"]
    variables = {item["name"]: item["value"] for item in runtime.get("env", [])}
    job: str = etl.init(
        image=runtime["image"],
        comm_type=message["communication"][: -len("://")],
        init_timeout=message["init_timeout"],
        obj_timeout=message["obj_timeout"],
        direct_put=message["support_direct_put"],
        **variables,
    )
    return job


def deploy(
    client: Any,
    cls: type[ETLServer],
    name: str | None = None,
    *,
    image: str,
    dependencies: Sequence[str] | None = None,
    os_packages: Sequence[str] | None = None,
    comm_type: str = DEFAULT_COMM,
    init_timeout: str = DEFAULT_INIT_TIMEOUT,
    obj_timeout: str = DEFAULT_OBJ_TIMEOUT,
    direct_put: bool = True,
    direct_file_access: bool = False,
    by_value: Sequence[ModuleType | str] | None = None,
    **env: Any,
) -> str:
    """Build :func:`init_message` for ``cls`` and send it; returns the job ID.

    ``client`` is an aistore ``Client`` (then give ``name``) or ``Client(...).etl(name)``;
    the other arguments are :func:`init_message`'s, and extra keywords become variables in
    the container (``NUM_WORKERS=8``), as with the SDK's ``init_class``.
    """
    etl = _etl_of(client, name)
    message = init_message(
        cls,
        etl.name,
        image=image,
        dependencies=dependencies,
        os_packages=os_packages,
        comm_type=comm_type,
        init_timeout=init_timeout,
        obj_timeout=obj_timeout,
        direct_put=direct_put,
        direct_file_access=direct_file_access,
        by_value=by_value,
        env=env,
    )
    return send(etl, message)


def init_class(client: Any, name: str | None = None, **options: Any) -> Callable[[S], S]:
    """A class decorator that deploys the class it decorates; arguments as :func:`deploy`."""

    def decorator(cls: S) -> S:
        deploy(client, cls, name, **options)
        return cls

    return decorator
