"""``make demo``: the sample bucket it makes, and a small run of the FFmpeg example."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from aisetl import demo

soundfile = pytest.importorskip("soundfile")
pytest.importorskip("PIL")


def test_generated_data_is_readable(tmp_path: Path) -> None:
    audio, images = demo.generate(tmp_path, clips=8, images=4)
    clips = sorted(audio.rglob("*.*"))
    assert len(clips) == 8
    assert {p.suffix for p in clips} == {".flac", ".ogg"}
    info = soundfile.info(str(clips[0]))
    assert info.duration == pytest.approx(1.0, abs=0.01)
    assert {info.samplerate for info in map(soundfile.info, map(str, clips))} >= {16000, 22050}
    from PIL import Image

    pictures = sorted(images.iterdir())
    assert {p.suffix for p in pictures} == {".png", ".jpg"}
    with Image.open(pictures[0]) as image:
        assert image.size[0] >= 160
    # Already there: nothing is made again.
    before = clips[0].stat().st_mtime_ns
    demo.generate(tmp_path, clips=8, images=4)
    assert clips[0].stat().st_mtime_ns == before


def test_demo_runs_the_ffmpeg_example_and_its_next_commands_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("imageio_ffmpeg")
    server = Path(__file__).resolve().parents[2] / demo.FFMPEG_EXAMPLE
    if not server.is_file():
        pytest.skip("the FFmpeg example is not there")
    repo = server.parents[2]
    monkeypatch.chdir(repo)
    root = tmp_path / "demo-data"
    assert demo.main(["--root", str(root), "--clips", "6", "--images", "2", "--workers", "1"]) == 0
    wavs = sorted((root / "wav").rglob("*.wav"))
    assert len(wavs) == 6
    assert soundfile.info(str(wavs[0])).format == "WAV"
    assert (root / "report.json").is_file()
    err = capsys.readouterr().err
    tail = err[err.index("demo: done. Next, try:") :].splitlines()[1:]
    commands = [line.split("#")[0].strip() for line in tail if "aisetl" in line.split("#")[0]]
    commands = [c for c in commands if not c.startswith("(")]
    assert len(commands) == 3, tail
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for command in commands:
        argv = shlex.split(command)
        program = argv.index("aisetl") if "aisetl" in argv else 0
        if argv[program] != "aisetl":  # .venv/bin/aisetl: the very command printed
            assert Path(argv[0]).is_file(), command
        cwd = tmp_path if argv[program + 1] == "new" else repo
        if cwd != repo and not Path(argv[0]).is_absolute() and argv[0] != "aisetl":
            argv[0] = str(repo / argv[0])
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, (command, done.stderr)
    assert soundfile.info(str(root / "clip.wav")).format == "WAV"
    assert sorted(p.suffix for p in (root / "thumbs").iterdir()) == [".webp", ".webp"]
    assert (tmp_path / "my-etl" / "server.py").is_file()
