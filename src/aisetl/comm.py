"""The one table of communication types: names, spec values, and who can serve them.

Everything that lists, validates or dispatches on a communication type reads this module: the
CLI's choices, the spec checker, the emulated target, the testing helpers and the load
generator. Which server classes can serve a type is a capability of the class
(:attr:`aisetl.server.ETLServer.comm_types`), not a rule repeated at each call site.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aisetl.server import ETLServer


@dataclass(frozen=True)
class CommType:
    """One way a target hands objects to an ETL server (PROTOCOL.md §1.3)."""

    name: str  # as the CLI and the testing API spell it: "hpush"
    spec_value: str  # as the init message spells it: "hpush://"
    summary: str  # one line for help texts
    reports_failures: bool  # the target can tell a failed object from a good one


HPUSH = CommType("hpush", "hpush://", "HTTP PUT of each object to the server", True)
HPULL = CommType("hpull", "hpull://", "HTTP GET; the server fetches each object", True)
WS = CommType("ws", "ws://", "WebSocket tasks, pipelined on long-lived connections", False)

#: Every communication type, in the order help texts list them.
ALL: tuple[CommType, ...] = (HPUSH, HPULL, WS)
#: Their names (``hpush``, ``hpull``, ``ws``): the CLI's ``--comm`` choices.
NAMES: tuple[str, ...] = tuple(comm.name for comm in ALL)
#: Their spec values (``hpush://``, ...).
SPEC_VALUES: tuple[str, ...] = tuple(comm.spec_value for comm in ALL)

#: What ``aisetl bench`` and the load generator measure: each type, plus hpush with FQN and
#: hpush with a direct put to the target.
LOAD_MODES: tuple[str, ...] = (*NAMES, "fqn", "direct")

_BY_NAME = {comm.name: comm for comm in ALL}
_BY_SPEC = {comm.spec_value: comm for comm in ALL}


def get(name: str) -> CommType:
    """The communication type called ``name`` (``hpush`` or ``hpush://``); ``ValueError`` else."""
    comm = _BY_NAME.get(name) or _BY_SPEC.get(name)
    if comm is None:
        raise ValueError(f"unknown communication type {name!r}: use one of {', '.join(NAMES)}")
    return comm


def by_spec_value(value: str) -> CommType | None:
    """The type whose spec value is exactly ``value`` (``hpush://``), or ``None``."""
    return _BY_SPEC.get(value)


def by_name(name: str) -> CommType | None:
    """The type whose name is exactly ``name`` (``hpush``), or ``None``."""
    return _BY_NAME.get(name)


def unsupported_reason(comm: str, server_cls: type[ETLServer], label: str = "") -> str | None:
    """Why ``server_cls`` cannot serve ``comm`` (a sentence), or ``None`` when it can."""
    if comm in server_cls.comm_types:
        return None
    can = [name for name in NAMES if name in server_cls.comm_types]
    who = label or server_cls.__name__
    hint = "; for ws use a FastAPIServer" if comm == WS.name else ""
    return f"{who} cannot serve {comm} (it serves {', '.join(can)}){hint}"


def lost_failure_warning(comm: str) -> str | None:
    """The warning for a type whose failures a target cannot see, or ``None``."""
    if get(comm).reports_failures:
        return None
    return (
        f"over {comm} a failing object is lost silently in a cluster: the target takes the "
        "server's error reply for success and stores the object empty or skips it "
        "(PROTOCOL.md §7.4); use hpush or hpull for transforms that can fail"
    )
