"""Ports for the servers we start: picking one, holding it until its server listens, and
telling whether the process listening on it is the one we started.

A port picked free may be taken before the server binds it: by another test process that
picked the same number, or by anything else. Two measures keep a start truthful:

- :class:`PortLease` holds the picked port bound while the server starts: bound without
  ``SO_REUSEADDR`` (so no other socket holds the port) and then given it (not listening). Every
  other pick, a lease, :func:`free_port` or the kernel's, refuses a held port, yet a server that
  binds with ``SO_REUSEADDR`` (uvicorn, gunicorn, the standard library's, Go's and Node's
  listeners all do) can still listen on it.
- :func:`listener_is_ours` reads ``/proc`` to tell whether the socket that listens on the port
  belongs to the server's processes, so a ``/health`` answer from someone else's server on the
  same port is never taken for ours.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from pathlib import Path

#: The span of ports below the kernel's ephemeral range that :func:`free_port` picks from.
PORT_SPAN = 12000
_EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"  # the TCP state /proc/net/tcp writes for a listening socket


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for port-0 binds and outgoing connections."""
    try:
        return int(Path(_EPHEMERAL_RANGE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bound(host: str, port: int) -> socket.socket | None:
    """A socket bound to ``host:port`` (without ``SO_REUSEADDR``), or None when it is taken."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock


def _pick(host: str) -> socket.socket:
    """A socket bound to a free port, below the ephemeral range when one is free there.

    A port from that range may be given to an outgoing connection (or another port-0 bind)
    before the server binds it, which then fails to listen.
    """
    top = _ephemeral_low()
    for _ in range(64):  # bounded; a busy range falls back to the kernel's choice
        sock = _bound(host, random.randrange(max(1024, top - PORT_SPAN), top))
        if sock is not None:
            return sock
    sock = _bound(host, 0)
    if sock is None:
        raise OSError(f"no free TCP port on {host}")
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, for a server to bind soon after.

    Nothing holds it: prefer :class:`PortLease` when the server takes a while to start.
    """
    with _pick(host) as sock:
        port: int = sock.getsockname()[1]
        return port


class PortLease:
    """A free port, held bound on ``host`` until :meth:`release` (or the ``with`` block ends).

    While it is held, other leases, :func:`free_port` and every bind without ``SO_REUSEADDR``
    refuse the port; the server it is for binds it with ``SO_REUSEADDR`` and listens.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        sock = _pick(host)  # alone on the port: another lease is refused here
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the server may bind it
        self._sock: socket.socket | None = sock
        self.port: int = sock.getsockname()[1]

    def release(self) -> None:
        """Stop holding the port (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> PortLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _listening_inodes(port: int) -> set[str] | None:
    """The inodes of the sockets listening on ``port``; None when ``/proc`` cannot say."""
    inodes: set[str] = set()
    readable = False
    suffix = f":{port:04X}"
    for table in _TCP_TABLES:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and fields[1].endswith(suffix):
                inodes.add(fields[9])
    return inodes if readable else None


def _session(pid: str) -> str | None:
    """The session ID of process ``pid`` (``/proc/PID/stat``'s sixth field)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[3] if len(fields) > 3 else None


def _holds(pid: str, sockets: set[str]) -> bool:
    """Whether process ``pid`` has one of ``sockets`` (``socket:[inode]``) open."""
    fd_dir = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                if os.readlink(f"{fd_dir}/{fd}") in sockets:
                    return True
    return False


def _pid_namespace(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def listener_is_ours(session: int, port: int) -> bool | None:
    """Whether a process of session ``session`` holds a socket listening on ``port``.

    A server started in a session of its own (``start_new_session``) has its PID as session
    ID, and so have the workers it forks, even once they are re-parented. False only when the
    listening socket's holders are found and are processes of this PID namespace outside that
    session. None where ``/proc`` does not tell (not Linux; holders that cannot be read; a
    holder in another PID namespace, such as a container's server that ``docker run`` started
    for us): the caller then trusts the answer it got.
    """
    inodes = _listening_inodes(port)
    if not inodes:  # unreadable, or another network namespace's table
        return None
    sockets = {f"socket:[{inode}]" for inode in inodes}
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    wanted = str(session)
    if any(_session(pid) == wanted and _holds(pid, sockets) for pid in pids):
        return True
    holders = [pid for pid in pids if _holds(pid, sockets)]
    here = _pid_namespace("self")
    if holders and here is not None and all(_pid_namespace(pid) == here for pid in holders):
        return False
    return None
