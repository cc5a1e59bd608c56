"""FFmpeg to WAV: decode every result and check rate, channels, duration and pitch."""

from __future__ import annotations

import io
import subprocess
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from aisetl.testing import LocalETL, ServerStartError, serve

SERVER = str(Path(__file__).with_name("server.py"))
SECONDS = 0.75


@pytest.fixture(scope="module")
def etl() -> Iterator[LocalETL]:
    """Configured as in etl_spec.yaml: 16 kHz mono, FFmpeg reading the files itself."""
    with serve(SERVER, direct_fqn=True) as running:
        yield running


def check_wav(data: bytes, rate: int, channels: int, seconds: float = SECONDS) -> np.ndarray:
    """Decode a WAV result, check its header (with the strict stdlib reader too) and duration."""
    with wave.open(io.BytesIO(data)) as strict:  # fails on a header with placeholder sizes
        assert (strict.getframerate(), strict.getnchannels(), strict.getsampwidth()) == (
            rate,
            channels,
            2,
        )
        assert strict.getnframes() * 2 * channels + 44 == len(data)
    samples, found_rate = sf.read(io.BytesIO(data), always_2d=True)
    assert found_rate == rate and samples.shape[1] == channels
    assert abs(len(samples) / rate - seconds) < 0.05 * seconds  # lossy codecs pad a little
    return samples


def pitch(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency of the first channel, in Hz."""
    spectrum = np.abs(np.fft.rfft(samples[:, 0]))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize("fmt", ["flac", "ogg", "wav", "mp3"])
def test_to_16k_mono_wav(
    etl: LocalETL, mode: dict[str, Any], audio: Callable[..., bytes], fmt: str
) -> None:
    data = audio(fmt, seconds=SECONDS, rate=44100, channels=2, freq=440.0)
    result = etl.transform(data, path=f"bucket/clip.{fmt}", **mode)
    samples = check_wav(result, rate=16000, channels=1)
    assert abs(pitch(samples, 16000) - 440) < 5 or abs(pitch(samples, 16000) - 880) < 5


def test_m4a_with_its_index_at_the_end(
    etl: LocalETL, audio: Callable[..., bytes], tmp_path: Path
) -> None:
    """MP4 keeps its index after the audio: piped bytes go through a temporary file."""
    import imageio_ffmpeg

    source, m4a = tmp_path / "voice.wav", tmp_path / "voice.m4a"
    source.write_bytes(audio("wav", seconds=SECONDS, rate=22050, channels=1, freq=1000.0))
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(source)]
    subprocess.run([*command, "-c:a", "aac", str(m4a)], check=True, capture_output=True)
    assert m4a.read_bytes()[4:8] == b"ftyp"
    for comm, fqn in [("hpush", False), ("ws", False), ("hpull", True)]:
        result = etl.transform(m4a.read_bytes(), comm=comm, fqn=fqn, path="b/voice.m4a")
        samples = check_wav(result, 16000, 1)
        assert abs(pitch(samples, 16000) - 1000) < 5


def test_not_audio_is_415_with_ffmpeg_message(etl: LocalETL, http_mode: dict[str, Any]) -> None:
    result = etl.send(b"this is not audio at all" * 10, path="bucket/x.flac", **http_mode)
    assert result.status == 415
    assert result.error is not None and "ffmpeg cannot convert it" in result.error
    assert "Invalid data" in result.error


def test_image_has_no_audio_stream(etl: LocalETL, image: Callable[..., bytes]) -> None:
    result = etl.send(image((32, 32), "png"), path="bucket/x.png")
    assert (result.status, result.error and "no audio stream" in result.error) == (415, True)


def test_settings_from_the_environment(audio: Callable[..., bytes]) -> None:
    env = {"AR": "8000", "AC": "2"}
    with serve(SERVER, env=env) as etl:  # no direct FQN: the server reads the file for FFmpeg
        data = audio("flac", seconds=SECONDS, rate=48000, channels=1)
        for comm in ("hpush", "ws"):
            samples = check_wav(etl.transform(data, comm=comm, fqn=True), rate=8000, channels=2)
            assert np.allclose(samples[:, 0], samples[:, 1], atol=1e-3)  # mono copied to both


def test_bad_settings_stop_the_server_at_start() -> None:
    start = serve(SERVER, env={"CODEC": "no_such_codec"}, timeout=20)
    with pytest.raises(ServerStartError, match="ffmpeg rejects the output settings"), start:
        pass
