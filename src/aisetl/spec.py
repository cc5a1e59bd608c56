"""Write and validate ``etl_spec.yaml``, the runtime spec an AIStore cluster starts an ETL from.

The rules are the target's (PROTOCOL.md §11), with the stricter ETL name rule of the Python
SDK (§11.5). Every problem names the field and says why it is wrong.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aisetl import comm as comms

#: Communication values a target accepts (case-sensitive, with ``://``).
COMM_VALUES = comms.SPEC_VALUES
#: Short names (``aisetl run --comm``) and the spec value each stands for.
COMM_BY_NAME = {c.name: c.spec_value for c in comms.ALL}
#: Target defaults for absent fields (§11.2, TV-03).
DEFAULT_COMM = comms.HPUSH.spec_value
DEFAULT_INIT_TIMEOUT = 45.0
DEFAULT_OBJ_TIMEOUT = 10.0
#: The fields of a runtime spec; anything else is ignored by the proxy.
KNOWN_FIELDS = (
    "name",
    "runtime",
    "communication",
    "init_timeout",
    "obj_timeout",
    "support_direct_put",
    "resources",
    "env",
    "argument",
)
_RUNTIME_FIELDS = ("image", "command", "env")
#: The server's own deadline per object (the pod is not told the spec's obj_timeout).
DEADLINE_VAR = "AISETL_OBJ_TIMEOUT"
_RESOURCE_FIELDS = ("requests", "limits", "claims")

_NAME_MIN, _NAME_MAX = 6, 32
_NAME_CHARS = re.compile(r"[a-z0-9-]*")
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ENV_NAME_RE = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")

# Go's time.ParseDuration: an optional sign, then one or more <number><unit>, or a bare "0".
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")


class SpecError(ValueError):
    """The spec is invalid; ``problems`` lists ``(field, reason)`` pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{where}: {why}" for where, why in self.problems))


@dataclass(frozen=True)
class EnvVar:
    """One ``{name, value}`` entry of an ``env`` list."""

    name: str
    value: str


@dataclass(frozen=True)
class EtlSpec:
    """A validated runtime spec, with the target's defaults applied."""

    name: str
    image: str
    communication: str = DEFAULT_COMM
    init_timeout: float = DEFAULT_INIT_TIMEOUT
    obj_timeout: float = DEFAULT_OBJ_TIMEOUT
    support_direct_put: bool = False
    command: tuple[str, ...] = ()
    runtime_env: tuple[EnvVar, ...] = ()
    env: tuple[EnvVar, ...] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def comm(self) -> str:
        """The communication type's short name: ``hpush``, ``hpull`` or ``ws``."""
        return self.communication[: -len("://")]

    def environment(self) -> dict[str, str]:
        """The container variables the spec sets (``runtime.env`` first, then ``env``, §2.1)."""
        merged = {var.name: var.value for var in self.runtime_env}
        merged.update({var.name: var.value for var in self.env})
        return merged


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (``45s``, ``5m``, ``1h30m``, ``1.5s``, ``300ms``)."""
    body = text
    sign = 1.0
    if body[:1] in "+-" and body:
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        number, unit = match.groups()
        if not unit:
            raise ValueError(f"missing unit in duration {text!r} (use ns, us, ms, s, m or h)")
        if unit not in _DURATION_UNITS:
            raise ValueError(
                f"unknown unit {unit!r} in duration {text!r} (use ns, us, ms, s, m, h)"
            )
        total += float(number) * _DURATION_UNITS[unit]
        pos = match.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """A Go duration string for a whole number of seconds (``45s``, ``5m``, ``1h30m``)."""
    whole = int(seconds)
    if whole != seconds or whole < 0:
        raise ValueError("durations are written for whole, non-negative seconds")
    if whole == 0:
        return "0s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid ETL name (§11.5, the stricter rule), or ``None``."""
    if not _NAME_MIN <= len(name) <= _NAME_MAX:
        return f"{name!r} must be {_NAME_MIN} to {_NAME_MAX} characters long (it has {len(name)})"
    if not _NAME_CHARS.fullmatch(name):
        return f"{name!r} may contain only lower-case letters a-z, digits 0-9 and '-'"
    if not _NAME_RE.fullmatch(name):
        return f"{name!r} must start and end with a lower-case letter or a digit"
    return None


def comm_value(comm: str) -> str:
    """The spec value for a communication type given as ``hpush`` or ``hpush://``."""
    if comm in COMM_VALUES:
        return comm
    if comm in COMM_BY_NAME:
        return COMM_BY_NAME[comm]
    raise ValueError(f"unknown communication type {comm!r}: use {', '.join(comms.NAMES)}")


class _Checker:
    """Collects the problems and warnings of one spec document."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.problems: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def fail(self, where: str, why: str) -> None:
        self.problems.append((self.prefix + where, why))

    def warn(self, where: str, why: str) -> None:
        self.warnings.append(f"{self.prefix}{where}: {why}")

    def string(self, doc: Mapping[str, Any], key: str, where: str, required: bool) -> str | None:
        if key not in doc or doc[key] is None:
            if required:
                self.fail(where, "is required")
            return None
        value = doc[key]
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {_kind(value)} {value!r}")
            return None
        return value

    def duration(self, doc: Mapping[str, Any], key: str, default: float) -> float:
        if key not in doc or doc[key] is None:
            return default
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, str):
            self.fail(
                key,
                f"must be a Go duration string such as 45s, 5m or 1h30m, not {_kind(value)} "
                f"{value!r} (numbers are not accepted)",
            )
            return default
        if value == "":
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(key, f"{exc}; write e.g. 45s, 5m or 1h30m")
            return default
        if seconds < 0:
            self.fail(key, f"{value!r} is negative")
            return default
        return seconds or default

    def env_list(self, value: Any, where: str) -> tuple[EnvVar, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(where, f"must be a list of {{name, value}} entries, not {_kind(value)}")
            return ()
        out: list[EnvVar] = []
        for i, item in enumerate(value):
            at = f"{where}[{i}]"
            if not isinstance(item, Mapping):
                self.fail(at, f"must be a mapping with name and value, not {_kind(item)}")
                continue
            name = self.string(item, "name", f"{at}.name", required=True)
            if name is not None and not _ENV_NAME_RE.fullmatch(name):
                self.fail(f"{at}.name", f"{name!r} is not a valid environment variable name")
                name = None
            raw = item.get("value", "")
            if raw is None:
                raw = ""
            if not isinstance(raw, str):
                self.fail(
                    f"{at}.value",
                    f'must be a string, not {_kind(raw)} {raw!r} (quote it: "{_yaml_text(raw)}")',
                )
                continue
            for extra in item:
                if extra not in ("name", "value", "valueFrom"):
                    hint = _did_you_mean(extra, ("name", "value", "valueFrom"))
                    self.warn(at, f"unknown key {extra!r} is ignored{hint}")
            if name is not None:
                out.append(EnvVar(name, raw))
        return tuple(out)


def _did_you_mean(key: object, known: Sequence[str]) -> str:
    """``"; did you mean 'communication'?"`` for a key close to a known one, else ``""``."""
    if not isinstance(key, str):
        return ""
    close = difflib.get_close_matches(key.lower().replace("-", "_"), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def validate(doc: Any, *, where: str = "") -> EtlSpec:
    """Check one spec document (a parsed mapping); raise :class:`SpecError` listing every problem.

    ``where`` prefixes every field name (e.g. ``"document 2: "``).
    """
    check = _Checker(where)
    if not isinstance(doc, Mapping):
        check.fail("spec", f"must be a mapping of fields, not {_kind(doc)}")
        raise SpecError(check.problems)

    name = check.string(doc, "name", "name", required=True)
    if name is not None and (why := name_problem(name)) is not None:
        check.fail("name", why)

    image = ""
    command: tuple[str, ...] = ()
    runtime_env: tuple[EnvVar, ...] = ()
    runtime = doc.get("runtime")
    if runtime is None:
        if "spec" in doc:
            check.fail(
                "spec",
                "the Pod-spec form is deprecated (removal announced for AIStore 5.1); "
                "use runtime.image instead",
            )
        else:
            check.fail("runtime.image", "is required (the container image to run)")
    elif not isinstance(runtime, Mapping):
        check.fail(
            "runtime", f"must be a mapping with image (and command, env), not {_kind(runtime)}"
        )
    else:
        image = check.string(runtime, "image", "runtime.image", required=True) or ""
        if "image" in runtime and runtime["image"] == "":
            check.fail("runtime.image", "must not be empty")
        raw_command = runtime.get("command")
        if raw_command is not None:
            if not isinstance(raw_command, list) or not all(
                isinstance(part, str) for part in raw_command
            ):
                check.fail(
                    "runtime.command", "must be a list of strings, e.g. [aisetl, serve, ...]"
                )
            else:
                command = tuple(raw_command)
        runtime_env = check.env_list(runtime.get("env"), "runtime.env")
        for extra in runtime:
            if extra not in _RUNTIME_FIELDS:
                hint = _did_you_mean(extra, _RUNTIME_FIELDS)
                check.warn("runtime", f"unknown field {extra!r} is ignored by AIStore{hint}")

    communication = DEFAULT_COMM
    raw_comm = doc.get("communication")
    if raw_comm is not None:
        if not isinstance(raw_comm, str):
            check.fail("communication", f"must be a string, not {_kind(raw_comm)} {raw_comm!r}")
        elif raw_comm == "":
            pass
        elif raw_comm in COMM_VALUES:
            communication = raw_comm
        elif raw_comm in COMM_BY_NAME:
            check.fail(
                "communication",
                f"unknown comm-type {raw_comm!r}: AIStore needs the '://' suffix, "
                f"write {COMM_BY_NAME[raw_comm]!r}",
            )
        else:
            check.fail(
                "communication",
                f"unknown comm-type {raw_comm!r}: use one of {', '.join(COMM_VALUES)} "
                "(case-sensitive)",
            )

    direct_put = False
    raw_dp = doc.get("support_direct_put")
    if raw_dp is not None:
        if not isinstance(raw_dp, bool):
            check.fail(
                "support_direct_put", f"must be true or false, not {_kind(raw_dp)} {raw_dp!r}"
            )
        else:
            direct_put = raw_dp
    if communication == "ws://" and not direct_put:
        check.fail("communication", "ws:// requires support_direct_put: true")
    chosen = comms.by_spec_value(communication)
    lost = comms.lost_failure_warning(chosen.name) if chosen is not None else None
    if lost is not None and raw_comm is not None:
        check.warn("communication", lost)

    init_timeout = check.duration(doc, "init_timeout", DEFAULT_INIT_TIMEOUT)
    obj_timeout = check.duration(doc, "obj_timeout", DEFAULT_OBJ_TIMEOUT)

    resources = doc.get("resources")
    if resources is None:
        resources = {}
    elif not isinstance(resources, Mapping):
        check.fail(
            "resources", f"must be a mapping with requests and/or limits, not {_kind(resources)}"
        )
        resources = {}
    else:
        for key, value in resources.items():
            if key not in _RESOURCE_FIELDS:
                hint = _did_you_mean(key, _RESOURCE_FIELDS)
                check.fail(f"resources.{key}", f"unknown field: use requests and/or limits{hint}")
            elif key != "claims" and not isinstance(value, Mapping):
                check.fail(f"resources.{key}", "must be a mapping such as {cpu: 1, memory: 2Gi}")

    env = check.env_list(doc.get("env"), "env")
    _check_deadline(check, obj_timeout, [*runtime_env, *env])

    if "argument" in doc:
        check.warn(
            "argument",
            "is obsolete and ignored by AIStore (the target chooses FQN per request); remove it",
        )
    for extra in doc:
        if extra not in KNOWN_FIELDS and not (extra == "spec" and runtime is None):
            check.warn(
                str(extra),
                f"unknown field is ignored by AIStore{_did_you_mean(extra, KNOWN_FIELDS)}",
            )

    if check.problems:
        raise SpecError(check.problems)
    return EtlSpec(
        name=name or "",
        image=image,
        communication=communication,
        init_timeout=init_timeout,
        obj_timeout=obj_timeout,
        support_direct_put=direct_put,
        command=command,
        runtime_env=runtime_env,
        env=env,
        resources=dict(resources),
        warnings=tuple(check.warnings),
    )


def _check_deadline(check: _Checker, obj_timeout: float, env: Sequence[EnvVar]) -> None:
    """The server's AISETL_OBJ_TIMEOUT (the last one the pod gets) against obj_timeout."""
    values = [var.value for var in env if var.name == DEADLINE_VAR]
    if not values:
        return
    raw = values[-1].strip()
    try:
        seconds = float(raw) if raw else 0.0
    except ValueError:
        check.fail(
            f"env {DEADLINE_VAR}",
            f"{raw!r} is not a number of seconds: the server would refuse to start "
            f"(write {obj_timeout:g}, the obj_timeout)",
        )
        return
    if seconds == obj_timeout:
        return
    if not seconds:
        consequence = "the server has no deadline and works on after the target gave up"
    elif seconds < obj_timeout:
        consequence = "the server gives up first and fails objects the target still waits for"
    else:
        consequence = "the server keeps working on objects the target has given up on"
    check.warn(
        f"env {DEADLINE_VAR}",
        f"is {raw or 'empty'} but obj_timeout is {obj_timeout:g} s: {consequence}; "
        f"set {DEADLINE_VAR}={obj_timeout:g}",
    )


def loads(text: str) -> list[EtlSpec]:
    """Validate every ETL in a YAML text (documents separated by ``---``)."""
    try:
        docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark is not None else "yaml"
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([(at, f"not valid YAML: {reason}")]) from None
    if not docs:
        raise SpecError([("spec", "the file is empty: it needs at least name and runtime.image")])
    specs: list[EtlSpec] = []
    problems: list[tuple[str, str]] = []
    for index, doc in enumerate(docs, 1):
        try:
            specs.append(validate(doc, where=f"document {index}: " if len(docs) > 1 else ""))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return specs


def load(path: str | Path) -> list[EtlSpec]:
    """Read and validate a spec file; raise :class:`SpecError` or :class:`OSError`."""
    return loads(Path(path).read_text(encoding="utf-8"))


def render(
    name: str,
    image: str,
    *,
    comm: str = "hpush",
    support_direct_put: bool = True,
    init_timeout: str = "5m",
    obj_timeout: str = "45s",
    command: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> str:
    """A new ``etl_spec.yaml`` text; validated, so an invalid argument raises :class:`SpecError`.

    ``runtime.env`` gets ``AISETL_OBJ_TIMEOUT`` from ``obj_timeout`` (unless ``env`` has it):
    the pod is not told the spec's timeout, and a server without it has no deadline.
    """
    doc: dict[str, Any] = {"name": name, "runtime": {"image": image}}
    if command:
        doc["runtime"]["command"] = list(command)
    env = dict(env or {})
    with contextlib.suppress(ValueError):  # an invalid obj_timeout is reported below
        env.setdefault(DEADLINE_VAR, f"{parse_duration(obj_timeout):g}")
    if env:
        doc["runtime"]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    try:
        doc["communication"] = comm_value(comm)
    except ValueError as exc:
        raise SpecError([("communication", str(exc))]) from None
    doc["init_timeout"] = init_timeout
    doc["obj_timeout"] = obj_timeout
    doc["support_direct_put"] = support_direct_put
    validate(doc)
    header = (
        "# AIStore ETL runtime spec: start it on a cluster with\n"
        "#   ais etl init --spec etl_spec.yaml\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
