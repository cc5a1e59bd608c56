"""``aisetl new``: a new transformer folder whose test passes as generated."""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from aisetl import spec as specs
from aisetl.bundle import BundleError, build_wheel
from aisetl.cli.errors import CommandError
from aisetl.loader import FRAMEWORKS, framework_class

EPILOG = """\
exit codes:
  0  the folder was created
  2  bad input: NAME gives no usable ETL name, or the folder exists and is not empty
"""

#: Files of a new project: template name -> file written.
_FILES = {
    "server.py.tmpl": "server.py",
    "test_server.py.tmpl": "test_server.py",
    "requirements.txt.tmpl": "requirements.txt",
    "Dockerfile.tmpl": "Dockerfile",
    "README.md.tmpl": "README.md",
}
#: The extra each framework needs.
_EXTRA = {"fastapi": "[fastapi]", "flask": "[flask]", "http": ""}
#: Where the project keeps the aisetl that wrote it (it installs from there, offline).
WHEELS = "wheels"


def register(subparsers: Any) -> None:
    """Add the ``new`` verb."""
    parser = subparsers.add_parser(
        "new",
        help="create a new transformer folder (server, test, Dockerfile, etl_spec.yaml)",
        description="Create folder NAME with a server module, a test that uses aisetl.testing "
        "(it passes as generated: run pytest inside), a Dockerfile, requirements.txt, "
        "etl_spec.yaml and a README. wheels/ holds this aisetl as a wheel, which "
        "requirements.txt and the Dockerfile install (no package index needed for it).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", help="folder to create; its name names the ETL")
    parser.add_argument(
        "--server",
        choices=sorted(FRAMEWORKS),
        default="fastapi",
        help="web framework of the server (default fastapi)",
    )
    parser.add_argument(
        "--image", default=None, help="container image for etl_spec.yaml (default <etl-name>:0.1)"
    )
    parser.set_defaults(handler=run)


def etl_name_for(folder: str) -> str:
    """An ETL name derived from a folder name (lower-case, '-' separated, 6 to 32 characters)."""
    name = re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-")
    if len(name) < 6:
        name = f"{name}-etl".strip("-")
    name = name[:32].rstrip("-")
    if len(name) < 6:
        name = f"{name}-etl"
    return name


def class_name_for(folder: str) -> str:
    """A Python class name derived from a folder name (``my-etl`` -> ``MyEtlServer``)."""
    words = [word for word in re.split(r"[^A-Za-z0-9]+", folder) if word]
    name = "".join(word[:1].upper() + word[1:] for word in words) or "Transformer"
    if name[0].isdigit():
        name = "Etl" + name
    return name if name.endswith("Server") else name + "Server"


def create(folder: Path, framework: str = "fastapi", image: str | None = None) -> list[Path]:
    """Write a new transformer project into ``folder``; returns the files written."""
    base_name = folder.resolve().name
    etl_name = etl_name_for(base_name)
    problem = specs.name_problem(etl_name)
    if problem is not None:
        raise ValueError(f"cannot derive an ETL name from {base_name!r}: {problem}")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FileExistsError(f"{folder} already exists and is not empty")
    base = FRAMEWORKS[framework][1]
    image = image or f"{etl_name}:0.1"
    spec_text = specs.render(etl_name, image)
    folder.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(folder / WHEELS)
    comms = [f'"{name}"' for name in framework_class(framework).comm_types]
    values = {
        "title": base_name,
        "class_name": class_name_for(base_name),
        "base": base,
        "framework": framework,
        "requirement": f"./{WHEELS}/{wheel.name}{_EXTRA[framework]}",
        "wheels": WHEELS,
        "wheel": wheel.name,
        "extra": _EXTRA[framework],
        "etl_name": etl_name,
        "comms": ", ".join(comms),
        "image": image,
    }
    templates = resources.files("aisetl").joinpath("templates").joinpath("new")
    written: list[Path] = [wheel]
    for template, target in _FILES.items():
        text = Template(templates.joinpath(template).read_text(encoding="utf-8"))
        path = folder / target
        path.write_text(text.substitute(values), encoding="utf-8")
        written.append(path)
    spec_path = folder / "etl_spec.yaml"
    spec_path.write_text(spec_text, encoding="utf-8")
    written.append(spec_path)
    return written


def run(args: argparse.Namespace) -> int:
    """Create the folder and say what to do next."""

    folder = Path(args.name)
    try:
        files = create(folder, args.server, args.image)
    except (ValueError, FileExistsError, BundleError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot create {folder}: {exc.strerror or exc}") from None
    names = [p.relative_to(folder).as_posix() for p in files]
    print(f"created {folder}/ ({', '.join(names)})")
    print(f"next: cd {folder} && pytest")
    return 0
