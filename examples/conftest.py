"""Shared fixtures of the example tests: sample data made on the spot, and the ways to send it.

Nothing is downloaded: audio is a synthesized tone written with soundfile, images are gradients
drawn with numpy and encoded with Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from aisetl import comm as comms

#: Every way a target hands an object to a server: (communication type, local file or bytes).
ALL_MODES = [(comm, fqn) for comm in comms.NAMES for fqn in (False, True)]
#: The same without WebSocket, for servers that do not speak it (Flask, standard library).
HTTP_MODES = [mode for mode in ALL_MODES if mode[0] != "ws"]


def _mode_id(mode: tuple[str, bool]) -> str:
    return f"{mode[0]}-{'fqn' if mode[1] else 'body'}"


@pytest.fixture(params=ALL_MODES, ids=_mode_id)
def mode(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Keyword arguments of ``LocalETL.transform`` for one delivery mode: ``comm`` and ``fqn``."""
    comm, fqn = request.param
    return {"comm": comm, "fqn": fqn}


@pytest.fixture(params=HTTP_MODES, ids=_mode_id)
def http_mode(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Like ``mode``, over hpush and hpull only."""
    comm, fqn = request.param
    return {"comm": comm, "fqn": fqn}


def tone(
    seconds: float = 1.0, rate: int = 44100, channels: int = 2, freq: float = 440.0
) -> np.ndarray:
    """A sine tone, one column per channel (each channel an octave above the previous one)."""
    t = np.arange(round(seconds * rate)) / rate
    columns = [0.3 * np.sin(2 * np.pi * freq * 2**c * t) for c in range(channels)]
    return np.stack(columns, axis=1)


def make_audio(
    fmt: str = "flac",
    seconds: float = 1.0,
    rate: int = 44100,
    channels: int = 2,
    freq: float = 440.0,
) -> bytes:
    """An encoded tone: ``fmt`` is a soundfile format name (wav, flac, ogg, mp3, aiff)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, tone(seconds, rate, channels, freq), rate, format=fmt.upper())
    return buf.getvalue()


def make_image(size: tuple[int, int] = (96, 64), fmt: str = "png", mode: str = "RGB") -> bytes:
    """An encoded gradient image of ``size`` (width, height) in Pillow format ``fmt``."""
    from PIL import Image

    width, height = size
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, axis=1)
    pixels = np.stack([x, y, np.full_like(x, 128)], axis=2)
    image = Image.fromarray(pixels, "RGB").convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt.upper())
    return buf.getvalue()


@pytest.fixture(scope="session")
def audio() -> Callable[..., bytes]:
    """Factory: ``audio("ogg", seconds=0.5, rate=22050, channels=1)`` -> encoded bytes."""
    return make_audio


@pytest.fixture(scope="session")
def image() -> Callable[..., bytes]:
    """Factory: ``image((64, 48), "jpeg")`` -> encoded bytes."""
    return make_image
