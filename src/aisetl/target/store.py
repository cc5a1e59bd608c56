"""Buckets kept in local folders: one file per object, written atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from aisetl.target.wire import ObjectName, bucket_cname, validate_bucket_name

#: Prefix and suffix of in-progress files; listings skip names shaped like this.
TEMP_PREFIX = ".~aisetl-"
TEMP_SUFFIX = ".tmp"


def _is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


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


def write_atomic(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> int:
    """Write ``data`` to ``path`` through a temp file in the same folder; return the size.

    The temp file gets the permissions a plain write would (``0666`` less the umask) before it
    replaces ``path`` in one step: no reader ever sees a partial or unreadable file, and the
    temp file is removed on failure.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
    size = 0
    try:
        os.fchmod(fd, 0o666 & ~umask())
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


class Bucket:
    """A bucket whose objects are the files below one folder (nested names are subfolders).

    ``fqn(name)`` is the absolute path of an object's file: the path a target passes to an ETL
    server in FQN mode.
    """

    def __init__(
        self,
        name: str,
        root: str | os.PathLike[str],
        provider: str = "ais",
        namespace: str = "",
    ) -> None:
        validate_bucket_name(name)
        self.name = name
        self.provider = provider
        self.namespace = namespace
        self.root = Path(os.path.abspath(root))

    def __repr__(self) -> str:
        return f"Bucket({self.cname!r}, root={str(self.root)!r})"

    @property
    def cname(self) -> str:
        """``ais://name`` (with the namespace when there is one)."""
        return bucket_cname(self.provider, self.namespace, self.name)

    def object_name(self, name: str) -> ObjectName:
        """The full name of object ``name`` in this bucket."""
        return ObjectName(self.provider, self.namespace, self.name, name)

    def fqn(self, name: str) -> str:
        """Absolute path of the object's file; rejects names that leave the bucket's folder."""
        if not name or name.startswith("/") or "\x00" in name:
            raise ValueError(f"invalid object name {name!r}")
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts) or _is_temp(parts[-1]):
            raise ValueError(
                f"object name {name!r} cannot be stored in a folder: empty, '.' or '..' "
                "segments and temp-file names are not allowed"
            )
        return os.path.join(self.root, *parts)

    def exists(self, name: str) -> bool:
        """Whether the object exists."""
        try:
            return os.path.isfile(self.fqn(name))
        except ValueError:
            return False

    def size(self, name: str) -> int:
        """The object's size in bytes (``FileNotFoundError`` when missing)."""
        return os.stat(self.fqn(name)).st_size

    def get(self, name: str) -> bytes:
        """The object's content (``FileNotFoundError`` when missing)."""
        with open(self.fqn(name), "rb") as file:
            return file.read()

    def put(self, name: str, data: bytes | Iterable[bytes]) -> int:
        """Store an object atomically (see :func:`write_atomic`) and return its size."""
        path = self.fqn(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return write_atomic(path, data)

    def delete(self, name: str) -> bool:
        """Remove an object; ``False`` when it did not exist."""
        try:
            os.unlink(self.fqn(name))
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Object names (sorted) that start with ``prefix``; temp files are skipped."""
        return sorted(self.iter_names(prefix))

    def iter_names(self, prefix: str = "") -> Iterator[str]:
        """Object names that start with ``prefix``, in no particular order."""
        if not self.root.is_dir():
            return
        # Walk only the folder that can contain matches.
        base_dir, _, _ = prefix.rpartition("/")
        start = os.path.join(self.root, *base_dir.split("/")) if base_dir else str(self.root)
        if not os.path.isdir(start):
            return
        root_len = len(str(self.root)) + 1
        for folder, dirs, files in os.walk(start):
            dirs.sort()
            rel = folder[root_len:].replace(os.sep, "/") if len(folder) >= root_len else ""
            for file in files:
                if _is_temp(file):
                    continue
                name = f"{rel}/{file}" if rel else file
                if name.startswith(prefix):
                    yield name


class Mountpath:
    """A target's mountpath: buckets live at ``<root>/@<provider>/[<ns>/]<bucket>/%ob/``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(root))
        self._buckets: dict[tuple[str, str, str], Bucket] = {}

    def bucket_root(self, name: str, provider: str = "ais", namespace: str = "") -> Path:
        """Folder that holds a bucket's objects in the AIStore layout (§2.3)."""
        path = self.root / f"@{provider}"
        if namespace:
            path /= "@" + namespace if "#" in namespace else "#" + namespace
        return path / name / "%ob"

    def bucket(self, name: str, provider: str = "ais", namespace: str = "") -> Bucket:
        """The bucket ``name``, created (empty) when it does not exist yet."""
        key = (provider, namespace, name)
        found = self._buckets.get(key)
        if found is None:
            root = self.bucket_root(name, provider, namespace)
            found = Bucket(name, root, provider, namespace)
            root.mkdir(parents=True, exist_ok=True)
            self._buckets[key] = found
        return found

    def attach(
        self,
        name: str,
        folder: str | os.PathLike[str],
        provider: str = "ais",
        namespace: str = "",
    ) -> Bucket:
        """Serve an existing folder as bucket ``name``; FQNs are the files' own paths."""
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"bucket folder {os.fspath(folder)!r} does not exist")
        found = Bucket(name, folder, provider, namespace)
        self._buckets[(provider, namespace, name)] = found
        return found

    def lookup(self, name: str, provider: str = "ais", namespace: str = "") -> Bucket | None:
        """The bucket if it exists on this mountpath, else ``None``."""
        return self._buckets.get((provider, namespace, name))

    def buckets(self) -> list[Bucket]:
        """All buckets known to this mountpath."""
        return list(self._buckets.values())
