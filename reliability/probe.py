"""A kubelet-like ``/health`` prober, run as its own process so the load cannot slow it down.

``python -m reliability.probe HOST PORT SECONDS INTERVAL [TIMEOUT]`` opens a fresh connection
per probe (as a kubelet does), sends ``GET /health`` and prints one JSON line per probe:
``{"t": <monotonic start>, "s": <seconds>}`` or ``{"t": ..., "error": "..."}``. The clock is
the system-wide monotonic one, so the caller can keep the probes of a time window.
"""

from __future__ import annotations

import json
import socket
import sys
import time

REQUEST = b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"


def probe_once(host: str, port: int, timeout: float) -> float:
    """One probe: seconds from connect to the whole answer; raises ``OSError`` when it fails."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(REQUEST)
        data = b""
        while not data.endswith(b"Running"):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {data[:80]!r}")
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"answered {data[:80]!r}")
    return time.monotonic() - started


def main(argv: list[str]) -> int:
    """Probe until the time is up (or the process is terminated)."""
    host, port, seconds, interval = argv[0], int(argv[1]), float(argv[2]), float(argv[3])
    timeout = float(argv[4]) if len(argv) > 4 else 5.0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        began = time.monotonic()
        try:
            line = {"t": began, "s": probe_once(host, port, timeout)}
        except OSError as exc:
            line = {"t": began, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(line), flush=True)
        time.sleep(max(0.0, interval - (time.monotonic() - began)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
