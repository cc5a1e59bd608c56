"""A wheel of the aisetl that is running, so a project can install it without a package index.

``aisetl new`` puts one in the project it writes: the project's ``requirements.txt`` and
``Dockerfile`` install exactly the aisetl that generated them, even where the index does not
have it. The wheel is assembled from the installed package and its metadata (an editable
install included), with no build backend and no network.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

import aisetl

#: Fixed timestamp of every member: the same aisetl gives the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
#: Metadata files that describe an installation, not a distribution.
_NOT_DISTRIBUTED = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "WHEEL")


class BundleError(RuntimeError):
    """No wheel can be made (aisetl runs without its distribution metadata)."""


def _digest(data: bytes) -> str:
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _package_files(package_dir: Path) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    for path in sorted(package_dir.rglob("*")):
        relative = path.relative_to(package_dir)
        if not path.is_file() or "__pycache__" in relative.parts:
            continue
        if path.suffix in _SKIPPED_SUFFIXES:
            continue
        files.append((f"aisetl/{relative.as_posix()}", path.read_bytes()))
    return files


def _metadata_files(dist: importlib.metadata.Distribution, info: str) -> list[tuple[str, bytes]]:
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")  # PKG-INFO: a source tree
    if not text:
        raise BundleError("the installed aisetl has no METADATA: reinstall it with pip")
    files = [(f"{info}/METADATA", text.encode())]
    for optional in ("entry_points.txt", "top_level.txt"):
        found = dist.read_text(optional)
        if found:
            files.append((f"{info}/{optional}", found.encode()))
    for item in dist.files or ():
        parts = item.parts
        if len(parts) > 2 and parts[0].endswith(".dist-info") and parts[1] == "licenses":
            located = Path(str(item.locate()))
            if located.is_file():
                files.append((f"{info}/{'/'.join(parts[1:])}", located.read_bytes()))
    return files


def wheel_name() -> str:
    """``aisetl-<version>-py3-none-any.whl`` of the running aisetl."""
    return f"aisetl-{_distribution().version}-py3-none-any.whl"


def _distribution() -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution("aisetl")
    except importlib.metadata.PackageNotFoundError:
        raise BundleError(
            "aisetl runs without being installed (no distribution metadata), so no wheel can "
            "be made: pip install the aisetl source tree (pip install -e .)"
        ) from None


def build_wheel(folder: Path) -> Path:
    """Write the running aisetl as a wheel into ``folder``; returns its path."""
    dist = _distribution()
    version = dist.version
    info = f"aisetl-{version}.dist-info"
    wheel_info = (
        f"Wheel-Version: 1.0\nGenerator: aisetl {version}\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    members = _package_files(Path(aisetl.__file__).parent)
    members += _metadata_files(dist, info)
    members.append((f"{info}/WHEEL", wheel_info.encode()))
    if not any(name.endswith("/__init__.py") for name, _ in members):
        raise BundleError(f"no aisetl package found at {Path(aisetl.__file__).parent}")
    record = "".join(f"{name},{_digest(data)},{len(data)}\n" for name, data in members)
    record += f"{info}/RECORD,,\n"
    members.append((f"{info}/RECORD", record.encode()))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / wheel_name()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data)
    return path
