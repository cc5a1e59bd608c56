"""``make image-check``: build the runtime image, an example and an ``aisetl new`` project with a
real container engine, and drive each container with the emulated target.

Opt-in: it needs ``docker`` (``DOCKER_HOST`` is honoured) and the network (pip in the builds).
Containers use the host network and see the target's folder at the same path (as an ETL pod
sees the target's mounts), so hpush, hpull, ws and FQN all run as on a cluster. Base images
come from the engine's store or its registry; where neither has them, ``--debootstrap`` builds
a stand-in for ``python:3.11-slim`` from Debian's packages (root and debootstrap needed).

Exit status 0 when every check passed; each failure is printed on one line.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

from aisetl import ETLServer
from aisetl.cli.new import create
from aisetl.deploy import init_message
from aisetl.payload import python_version
from aisetl.target import EmulatedTarget
from aisetl.testing import LocalETL

REPO = Path(__file__).resolve().parents[1]
TAG = "aisetl-check"


class CheckFailed(Exception):
    """One check did not pass."""


class Shout(ETLServer):
    """Pickled by value (defined in ``__main__``); needs what PACKAGES and OS_PACKAGES add."""

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        import shutil as tools

        import xxhash  # installed by PACKAGES

        if isinstance(data, str):
            with open(data, "rb") as file:
                data = file.read()
        found = b"jq" if tools.which("jq") else b"no-jq"  # installed by OS_PACKAGES
        return data.upper() + b" " + xxhash.xxh64(data).hexdigest().encode() + b" " + found


def docker(*args: str, timeout: float = 1800, check: bool = True) -> str:
    """Run the docker CLI; its output, or :class:`CheckFailed` with its last lines."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise CheckFailed(f"docker {' '.join(args[:3])} ... failed ({done.returncode}):\n{tail}")
    return done.stdout + done.stderr


def docker_ok(*args: str, timeout: float = 600) -> tuple[bool, str]:
    """Whether a docker command succeeded, and its output."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def debian_stand_in(python: str) -> None:
    """``python:3.11-slim`` from Debian bookworm's own packages (no registry)."""
    if python != "3.11":
        raise CheckFailed("--debootstrap makes Python 3.11 (Debian bookworm's): use --python 3.11")
    with tempfile.TemporaryDirectory(prefix="aisetl-rootfs-") as root:
        subprocess.run(
            ["debootstrap", "--variant=minbase",
             "--include=python3,python3-pip,python3-venv,ca-certificates", "bookworm", root],
            check=True, timeout=1800, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        rootfs = Path(root)
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        host_ca = Path("/etc/ssl/certs/ca-certificates.crt")  # the host's trust, for its proxy
        if host_ca.is_file():
            shutil.copy(host_ca, rootfs / "etc/ssl/certs/ca-certificates.crt")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-c", "ENV LANG=C.UTF-8", "-c",
             "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "-", f"python:{python}-slim"],
            stdin=tar.stdout, check=True, timeout=600, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        tar.wait(60)


def ensure_base(image: str, python: str, debootstrap: bool) -> bool:
    """Whether ``image`` is available (in the store, pulled, or built with debootstrap)."""
    if docker_ok("image", "inspect", image)[0]:
        return True
    pulled, output = docker_ok("pull", image)
    if pulled:
        return True
    if debootstrap and image.endswith("-slim"):
        print(f"building a stand-in for {image} from Debian packages (debootstrap)")
        debian_stand_in(python)
        return True
    print(f"SKIPPED {image}: not in the engine's store and not pullable ({output[-200:]})")
    return False


def build(tag: str, context: Path, dockerfile: Path, python: str, variant: str = "") -> None:
    print(f"building {tag} ({dockerfile.relative_to(context)})", flush=True)
    args = ["build", "--network", "host", "-f", str(dockerfile), "-t", tag]
    args += ["--build-arg", f"PYTHON={python}"]
    if variant:
        args += ["--build-arg", f"VARIANT={variant}"]
    docker(*args, str(context))


@contextlib.contextmanager
def container(
    target: EmulatedTarget,
    name: str,
    image: str,
    env: dict[str, str],
    command: Sequence[str] = (),
    *,
    comm: str = "hpush",
) -> Iterator[LocalETL]:
    """``docker run`` the image behind the emulated target (stopped and removed at the end)."""
    cname = f"{TAG}-{name}-{uuid.uuid4().hex[:6]}"
    root = str(target.mountpath.root)
    argv = ["docker", "run", "--rm", "--name", cname, "--network", "host",
            "-v", f"{root}:{root}:ro", "-e", "AIS_TARGET_URL", "-e", "direct_put"]  # fmt: skip
    for key in env:
        argv += ["-e", key]
    argv += [image, *command, "--host", "127.0.0.1", "--port", "{port}"]
    etl = target.launch(name, argv, comm=comm, env=env, init_timeout=600, obj_timeout=120)
    try:
        yield LocalETL(target, etl)
    finally:
        target.stop(etl)
        docker("rm", "-f", cname, check=False)


def expect(what: str, got: bytes, wanted: bytes) -> None:
    if got != wanted:
        raise CheckFailed(f"{what}: got {got[:200]!r}, wanted {wanted!r}")
    print(f"ok   {what}")


def check_runtime(target: EmulatedTarget, image: str, variant: str) -> None:
    python = python_version()
    build(image, REPO, REPO / "docker" / "runtime" / "Dockerfile", python, variant)
    message = init_message(
        Shout,  # type: ignore[type-abstract]
        "check-runtime",
        image=image,
        dependencies=["xxhash>=3"],
        os_packages=["jq"],
    )
    env = {item["name"]: item["value"] for item in message["runtime"]["env"]}
    import xxhash

    digest = xxhash.xxh64(b"abc").hexdigest().encode()
    with container(target, "check-runtime", image, env) as etl:
        for comm in ("hpush", "hpull", "ws"):
            for fqn in (False, True):
                got = etl.transform(b"abc", comm=comm, fqn=fqn)
                expect(f"{image} {comm}{' fqn' if fqn else ''}", got, b"ABC " + digest + b" jq")
    bad = subprocess.run(
        ["docker", "run", "--rm", "-e", "ETL_CLASS_PAYLOAD=not base64!", image],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    line = bad.stderr.strip().splitlines()[-1] if bad.stderr.strip() else ""
    if bad.returncode != 1 or "ETL_CLASS_PAYLOAD is not valid base64" not in line:
        raise CheckFailed(f"{image}: a bad payload gave exit {bad.returncode}: {line!r}")
    print(f"ok   {image}: a bad payload is one line and exit 1")


def dockerfile_command(dockerfile: Path) -> list[str]:
    lines = [line for line in dockerfile.read_text().splitlines() if line.startswith("CMD ")]
    command: list[str] = json.loads(lines[-1][4:])
    return [part for part in command if part not in ("--port", "8000")]


def check_example(target: EmulatedTarget, python: str) -> None:
    dockerfile = REPO / "examples" / "md5" / "Dockerfile"
    image = f"{TAG}/md5:{python}"
    build(image, REPO, dockerfile, python)
    with container(target, "check-md5", image, {}, dockerfile_command(dockerfile)) as etl:
        for comm, fqn in (("hpush", False), ("hpull", True), ("ws", True)):
            got = etl.transform(b"abc", comm=comm, fqn=fqn)
            expect(f"{image} {comm}", got, hashlib.md5(b"abc").hexdigest().encode())


def check_new_project(target: EmulatedTarget, python: str, work: Path) -> None:
    folder = work / "word-upper"
    create(folder, "fastapi")
    image = f"{TAG}/word-upper:{python}"
    build(image, folder, folder / "Dockerfile", python)
    command = dockerfile_command(folder / "Dockerfile")
    with container(target, "check-new", image, {}, command) as etl:
        expect(f"{image} ws", etl.transform(b"abc", comm="ws"), b"ABC")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=python_version(), help="image Python (default: ours)")
    parser.add_argument("--variants", default="slim,alpine", help="runtime image variants")
    parser.add_argument("--debootstrap", action="store_true", help="build a missing slim base")
    args = parser.parse_args(argv)
    if args.python != python_version():
        print(f"--python {args.python}: the payload is pickled here, on {python_version()}")
        return 2
    answers, info = docker_ok("info", "--format", "{{.ServerVersion}}", timeout=60)
    if not answers:
        print(f"image-check: no container engine answers: {info[-300:]}")
        return 2
    failures: list[str] = []
    skipped: list[str] = []
    passed = 0
    work = tempfile.mkdtemp(prefix="aisetl-image-check-")
    try:
        with EmulatedTarget(Path(work) / "target", time_scale=0.01) as target:
            steps: list[tuple[str, Callable[[], None]]] = []
            for variant in [v for v in args.variants.split(",") if v]:
                base = f"python:{args.python}-{variant}"
                if not ensure_base(base, args.python, args.debootstrap):
                    skipped.append(base)
                    continue
                image = f"{TAG}/runtime:{args.python}-{variant}"
                steps.append((image, partial(check_runtime, target, image, variant)))
            if any(what.endswith("-slim") for what, _ in steps):
                steps.append(("example md5", partial(check_example, target, args.python)))
                steps.append(
                    ("aisetl new", partial(check_new_project, target, args.python, Path(work)))
                )
            for what, step in steps:
                try:
                    step()
                    passed += 1
                except (CheckFailed, subprocess.SubprocessError, OSError) as exc:
                    failures.append(what)
                    print(f"FAIL {what}: {exc}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not steps:
        print("image-check: no base image available; nothing was built")
        return 2
    failed = f"; failed: {', '.join(failures)}" if failures else ""
    missing = f"; not checked (no base image): {', '.join(skipped)}" if skipped else ""
    print(f"image-check: {passed} of {len(steps)} passed{failed}{missing}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
