"""Audio splitter: cut samples equal the source's, tars list every segment, errors are clear."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from aisetl.testing import LocalETL, serve

SERVER = str(Path(__file__).with_name("server.py"))
RATE = 8000


@pytest.fixture(scope="module")
def etl() -> Iterator[LocalETL]:
    with serve(SERVER) as running:
        yield running


@pytest.fixture(scope="module")
def clip(audio: Callable[..., bytes]) -> tuple[bytes, np.ndarray]:
    """A 3-second stereo FLAC (16-bit) and its decoded samples."""
    data = audio("flac", seconds=3.0, rate=RATE, channels=2)
    samples, _ = sf.read(io.BytesIO(data), always_2d=True)
    return data, samples


def read(data: bytes) -> tuple[np.ndarray, sf._SoundFileInfo]:
    samples, _ = sf.read(io.BytesIO(data), always_2d=True)
    return samples, sf.info(io.BytesIO(data))


def members(data: bytes) -> dict[str, bytes]:
    """The files of a tar, in order."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_one_segment_is_the_cut_audio(
    etl: LocalETL, mode: dict[str, Any], clip: tuple[bytes, np.ndarray]
) -> None:
    data, source = clip
    args = json.dumps({"from_time": 0.5, "to_time": "00:01.25"})
    samples, info = read(etl.transform(data, path="bucket/song.flac", etl_args=args, **mode))
    assert (info.format, info.samplerate, info.channels) == ("WAV", RATE, 2)
    assert np.array_equal(samples, source[4000:10000])  # 16-bit FLAC to 16-bit WAV: exact


def test_manifest_gives_a_tar_of_segments(
    etl: LocalETL, mode: dict[str, Any], clip: tuple[bytes, np.ndarray]
) -> None:
    data, source = clip
    manifest = "\n".join(
        json.dumps(segment)
        for segment in [
            {"from_time": 0, "to_time": 1},
            {"from_time": 1, "to_time": 2.5, "name": "middle"},
            {"from_time": "0:02.5"},  # to the end
        ]
    )
    tar = members(etl.transform(data, path="bucket/dir/song.flac", etl_args=manifest, **mode))
    assert list(tar) == ["song_0000.wav", "middle.wav", "song_0002.wav"]
    bounds = [(0, 8000), (8000, 20000), (20000, 24000)]
    for content, (start, end) in zip(tar.values(), bounds, strict=True):
        samples, _ = read(content)
        assert np.array_equal(samples, source[start:end])


@pytest.mark.parametrize("fmt", ["flac", "ogg"])
def test_segments_in_another_format(
    etl: LocalETL, clip: tuple[bytes, np.ndarray], fmt: str
) -> None:
    data = clip[0]
    args = {"segments": [{"to_time": 1}, {"from_time": 1, "to_time": 2}], "format": fmt}
    tar = members(etl.transform(data, path="b/a.flac", etl_args=json.dumps(args), comm="ws"))
    assert list(tar) == [f"a_0000.{fmt}", f"a_0001.{fmt}"]
    for content in tar.values():
        samples, info = read(content)
        assert info.format == fmt.upper() and info.samplerate == RATE
        assert abs(len(samples) - RATE) <= 1


def test_many_segments(etl: LocalETL, clip: tuple[bytes, np.ndarray]) -> None:
    data, source = clip
    cuts = [{"from_time": i / 100, "to_time": (i + 1) / 100} for i in range(300)]
    tar = members(etl.transform(data, etl_args=json.dumps({"segments": cuts}), comm="hpull"))
    assert len(tar) == 300
    joined = np.concatenate([read(content)[0] for content in tar.values()])
    assert np.array_equal(joined, source)


def test_other_input_formats(etl: LocalETL, audio: Callable[..., bytes]) -> None:
    for fmt in ("wav", "ogg", "mp3"):
        data = audio(fmt, seconds=2.0, rate=RATE, channels=1)
        samples, info = read(etl.transform(data, etl_args='{"from_time": 0.5, "to_time": 1.5}'))
        assert info.channels == 1 and abs(len(samples) - RATE) <= 1


@pytest.mark.parametrize(
    ("etl_args", "message"),
    [
        ("", "etl_args must give from_time/to_time"),
        ("not json", "etl_args is not JSON or JSON Lines"),
        ('{"from_time": 2, "to_time": 1}', "to_time 1 must come after from_time 2"),
        ('{"from_time": 5}', "from_time 5 s is past the end (3.000 s)"),
        ('{"from_time": "ab:cd"}', "from_time must be seconds or [HH:]MM:SS"),
        ('{"from_time": -1}', "must be a time of 0 or more"),
        ('{"start": 1}', "unknown key 'start'"),
        ('{"segments": []}', "segments must be a non-empty list"),
        ('{"to_time": 1}\n{"from_time": 9}', "segment 2: from_time 9 s is past the end"),
        ('{"to_time": 1}\n[1, 2]', "line 2 must be a JSON object"),
        ('{"from_time": 1, "format": "mp4"}', "format must be one of wav, flac, ogg"),
    ],
)
def test_bad_arguments_are_400(
    etl: LocalETL,
    http_mode: dict[str, Any],
    clip: tuple[bytes, np.ndarray],
    etl_args: str,
    message: str,
) -> None:
    result = etl.send(clip[0], etl_args=etl_args, **http_mode)
    assert result.status == 400
    assert result.error is not None and message in result.error


def test_not_audio_is_415(etl: LocalETL, http_mode: dict[str, Any]) -> None:
    result = etl.send(b"no audio here" * 100, etl_args='{"from_time": 1}', **http_mode)
    assert result.status == 415
    assert result.error is not None and "cannot read the audio" in result.error


def test_pretty_printed_json_is_one_segment(etl: LocalETL, clip: tuple[bytes, np.ndarray]) -> None:
    args = json.dumps({"from_time": 0.5, "to_time": 1}, indent=2)  # several lines, one object
    samples, info = read(etl.transform(clip[0], etl_args=args))
    assert info.format == "WAV" and np.array_equal(samples, clip[1][4000:8000])
