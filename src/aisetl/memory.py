"""How much memory this process may use: the machine's, or its container's limit if lower.

A buffered transform holds the whole request body in memory, so a body larger than this can
never be served; answering 413 at once beats being killed for memory, which would take the
container (and with it the ETL, on every target) down.
"""

from __future__ import annotations

import functools
import os

#: cgroup v2 and v1 files that hold a container's memory limit.
_CGROUP_LIMIT_FILES = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
)


def _physical_memory() -> int | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def _cgroup_limit() -> int | None:
    for path in _CGROUP_LIMIT_FILES:
        try:
            with open(path) as file:
                text = file.read().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
        return None  # "max": no limit
    return None


@functools.lru_cache(maxsize=1)
def memory_limit() -> int | None:
    """Bytes of memory this process can ever have, or None when unknown."""
    known = [value for value in (_physical_memory(), _cgroup_limit()) if value]
    return min(known) if known else None
