"""``make demo``: the sample bucket it makes, and a small run of the FFmpeg example."""

from __future__ import annotations

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


def test_demo_runs_the_ffmpeg_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("imageio_ffmpeg")
    server = Path(__file__).resolve().parents[2] / demo.FFMPEG_EXAMPLE
    if not server.is_file():
        pytest.skip("the FFmpeg example is not there")
    monkeypatch.chdir(server.parents[2])
    root = tmp_path / "demo-data"
    assert demo.main(["--root", str(root), "--clips", "6", "--images", "1", "--workers", "1"]) == 0
    wavs = sorted((root / "wav").rglob("*.wav"))
    assert len(wavs) == 6
    assert soundfile.info(str(wavs[0])).format == "WAV"
    assert (root / "report.json").is_file()
