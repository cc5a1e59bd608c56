"""``aisetl new``: a project whose own test passes as generated."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import aisetl
from aisetl import spec
from aisetl.bundle import build_wheel, wheel_name
from aisetl.cli import main
from aisetl.cli.new import class_name_for, etl_name_for


@pytest.mark.parametrize(
    ("folder", "etl", "cls"),
    [
        ("my-upper", "my-upper", "MyUpperServer"),
        ("md5", "md5-etl", "Md5Server"),
        ("Image_Resize", "image-resize", "ImageResizeServer"),
        ("3d", "3d-etl", "Etl3dServer"),
        ("___", "etl-etl", "TransformerServer"),
        ("x" * 40, "x" * 32, "X" + "x" * 39 + "Server"),
    ],
)
def test_names(folder: str, etl: str, cls: str) -> None:
    assert etl_name_for(folder) == etl
    assert spec.name_problem(etl) is None
    assert class_name_for(folder) == cls


@pytest.mark.parametrize("framework", ["fastapi", "http"])
def test_generated_project_passes_its_test(
    tmp_path: Path, framework: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "word-upper"
    assert main(["new", str(folder), "--server", framework]) == 0
    assert "next: cd" in capsys.readouterr().out
    names = {p.name for p in folder.iterdir()}
    assert names == {
        "server.py",
        "test_server.py",
        "requirements.txt",
        "Dockerfile",
        "README.md",
        "etl_spec.yaml",
        "wheels",
    }
    assert [p.name for p in (folder / "wheels").iterdir()] == [wheel_name()]
    (found,) = spec.load(folder / "etl_spec.yaml")
    assert found.name == "word-upper" and found.support_direct_put
    assert "WordUpperServer" in (folder / "Dockerfile").read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = "7 passed" if framework == "fastapi" else "5 passed"
    assert expected in proc.stdout


def test_existing_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert main(["new", str(tmp_path / "taken")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


def test_odd_names_and_image(tmp_path: Path) -> None:
    assert main(["new", str(tmp_path / "___")]) == 0
    assert "name: etl-etl" in (tmp_path / "___" / "etl_spec.yaml").read_text()
    assert "class TransformerServer(" in (tmp_path / "___" / "server.py").read_text()
    assert main(["new", str(tmp_path / "x"), "--image", "reg/x:2"]) == 0
    assert "reg/x:2" in (tmp_path / "x" / "etl_spec.yaml").read_text()


def _fresh_venv(path: Path) -> Path:
    """A new virtual environment that sees this one's packages (the dependencies), not aisetl's
    editable finder: only what ``requirements.txt`` installs can provide ``aisetl`` there."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(purelib, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_requirements_install_this_aisetl_offline(tmp_path: Path, framework: str) -> None:
    folder = tmp_path / "word-upper"
    assert main(["new", str(folder), "--server", framework]) == 0
    requirement = (folder / "requirements.txt").read_text().strip()
    assert requirement == f"./wheels/{wheel_name()}[{framework}]"
    dockerfile = (folder / "Dockerfile").read_text()
    assert "COPY wheels/ wheels/" in dockerfile and "-r requirements.txt" in dockerfile
    python = _fresh_venv(tmp_path / "fresh")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--no-cache-dir", "-r", "requirements.txt"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    # The installed package is this aisetl, file for file.
    where = subprocess.run(
        [python, "-c", "import aisetl; print(aisetl.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    installed = Path(where).parent
    assert installed.is_relative_to(tmp_path / "fresh")
    source = Path(aisetl.__file__).parent
    for module in source.rglob("*.py"):
        copy = installed / module.relative_to(source)
        assert copy.read_bytes() == module.read_bytes(), f"{copy} differs"
    # And it works: the project's server through the installed aisetl's own command.
    (folder / "in.txt").write_bytes(b"hello")
    got = subprocess.run(
        [python, "-m", "aisetl", "get", "server.py", "in.txt", "-o", "out.txt"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert (folder / "out.txt").read_bytes() == b"HELLO"


def test_the_wheel_is_reproducible_and_complete(tmp_path: Path) -> None:
    first = build_wheel(tmp_path / "a")
    second = build_wheel(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        names = set(archive.namelist())
        record = archive.read(f"aisetl-{aisetl.__version__}.dist-info/RECORD").decode()
    assert {"aisetl/__init__.py", "aisetl/py.typed", "aisetl/templates/new/server.py.tmpl"} <= names
    info = f"aisetl-{aisetl.__version__}.dist-info"
    assert {f"{info}/METADATA", f"{info}/WHEEL", f"{info}/entry_points.txt"} <= names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert {line.split(",")[0] for line in record.splitlines()} == names


def test_without_an_installed_aisetl_no_wheel_is_made(tmp_path: Path) -> None:
    """The package alone (no metadata beside it) on a base interpreter's path."""
    lib = tmp_path / "lib"
    shutil.copytree(Path(aisetl.__file__).parent, lib / "aisetl")
    base = getattr(sys, "_base_executable", sys.executable)
    script = (
        "from pathlib import Path\n"
        "from aisetl.bundle import BundleError, build_wheel\n"
        "try:\n    build_wheel(Path('w'))\nexcept BundleError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [base, "-I", "-c", f"import sys; sys.path.insert(0, {str(lib)!r})\n{script}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if "No module named" in done.stderr:
        pytest.skip(f"the base interpreter cannot import aisetl's modules: {done.stderr[-200:]}")
    assert "runs without being installed" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "w").exists()
