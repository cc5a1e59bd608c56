"""``aisetl new``: a project whose own test passes as generated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aisetl import spec
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
    }
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
