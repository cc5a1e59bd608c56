"""Files the command writes: atomically (never a partial file), with the umask's permissions."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from aisetl.target import Bucket, Target
from aisetl.target.store import TEMP_PREFIX, TEMP_SUFFIX


def umask() -> int:
    """The process's umask (read without changing it where Linux tells it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give a new file."""
    return 0o666 & ~umask()


def write_atomic(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> int:
    """Write ``data`` to ``path`` through a temp file in the same folder; return the size.

    The temp file gets the permissions a normal write would (``0666`` less the umask) before
    it replaces ``path`` in one step, so no reader ever sees a partial or unreadable file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    size = 0
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as file:
            if isinstance(data, (bytes, bytearray, memoryview)):
                size = file.write(data)
            else:
                for chunk in data:
                    size += file.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size


class OutputBucket(Bucket):
    """A bucket whose objects are written with :func:`write_atomic` (the umask's permissions)."""

    def put(self, name: str, data: bytes | Iterable[bytes]) -> int:
        """Store an object atomically, as :meth:`Bucket.put`, readable as a normal write is."""
        path = self.fqn(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return write_atomic(path, data)


def attach_output(target: Target, name: str, folder: Path) -> Bucket:
    """Serve ``folder`` as bucket ``name`` on ``target``; results stored there obey the umask.

    The emulated target stores results with ``Bucket.put``; the bucket it attached is given
    :class:`OutputBucket`'s ``put`` (same data, only the write differs).
    """
    bucket = target.attach_bucket(name, folder)
    bucket.__class__ = OutputBucket
    return bucket
