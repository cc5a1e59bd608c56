"""Destination names of ``aisetl run``: the ``--ext`` mapping, and names that would collide."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from aisetl.cli.errors import CommandError

#: ``--ext`` key that stands for every extension (and for names without one).
ANY = "*"
#: Collisions listed in the error message.
SHOWN = 10


def ext_map(values: list[str]) -> dict[str, str]:
    """``--ext`` values (``FROM:TO``, repeatable or comma-separated) as a mapping."""
    mapping: dict[str, str] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            old, sep, new = item.partition(":")
            old, new = old.strip().lstrip("."), new.strip().lstrip(".")
            if not sep or not old or not new or "/" in old + new:
                raise CommandError(f"--ext {item!r}: write FROM:TO, e.g. flac:wav or '*:png'")
            if ANY in new or (ANY in old and old != ANY):
                raise CommandError(
                    f"--ext {item!r}: '*' stands alone for any extension, as in '*:png'; "
                    "write other extensions in full"
                )
            mapping[old] = new
    return mapping


def renamer(ext: dict[str, str]) -> Callable[[str], str]:
    """Name in --dst of each object: its extension replaced as ``ext`` says.

    An object's own extension is looked up first; ``*`` replaces any other extension and
    gives names without one the new extension (``README`` -> ``README.png``).
    """
    fallback = ext.get(ANY)

    def rename(name: str) -> str:
        folder, slash, base = name.rpartition("/")
        stem, dot, suffix = base.rpartition(".")
        if dot and stem and suffix in ext and suffix != ANY:
            base = f"{stem}.{ext[suffix]}"
        elif fallback is not None:
            base = f"{stem}.{fallback}" if dot and stem else f"{base}.{fallback}"
        return folder + slash + base

    return rename


def collisions(names: Iterable[str], rename: Callable[[str], str]) -> dict[str, list[str]]:
    """Destination names that more than one object would get (or that a folder needs).

    Returns ``{destination: [source names]}``; a destination that is also the folder of
    another destination (``a`` and ``a/b``) collides too.
    """
    sources: dict[str, list[str]] = defaultdict(list)
    for name in names:
        sources[rename(name)].append(name)
    found = {dst: sorted(srcs) for dst, srcs in sources.items() if len(srcs) > 1}
    folders: dict[str, str] = {}
    for dst, srcs in sources.items():
        parts = dst.split("/")
        for depth in range(1, len(parts)):
            folders.setdefault("/".join(parts[:depth]), srcs[0])
    for folder, inside in folders.items():
        if folder in sources and folder not in found:
            found[folder] = sorted([*sources[folder], inside])
    return dict(sorted(found.items()))


def check_collisions(names: Iterable[str], rename: Callable[[str], str], how: str) -> None:
    """Raise :class:`CommandError` listing the destination names several objects would get."""
    found = collisions(names, rename)
    if not found:
        return
    lines = [f"{dst} <- {', '.join(srcs)}" for dst, srcs in list(found.items())[:SHOWN]]
    more = f"\n  ... and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    raise CommandError(
        f"{how} gives {len(found)} destination name(s) to more than one object (one result "
        "would overwrite another); rename those objects, narrow --prefix, or change --ext:\n  "
        + "\n  ".join(lines)
        + more
    )
