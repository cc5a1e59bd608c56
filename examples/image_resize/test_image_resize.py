"""Image resize: sizes, fits, formats and qualities checked by decoding the result with Pillow."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from aisetl.testing import LocalETL, serve

SERVER = str(Path(__file__).with_name("server.py"))


@pytest.fixture(scope="module")
def etl() -> Iterator[LocalETL]:
    with serve(SERVER) as running:
        yield running


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("source_format", ["png", "jpeg", "gif", "bmp"])
def test_resize_to_webp(
    etl: LocalETL, mode: dict[str, Any], image: Callable[..., bytes], source_format: str
) -> None:
    data = image((120, 80), source_format)
    result = decode(etl.transform(data, path="bucket/pic.img", etl_args="64x64,webp", **mode))
    assert (result.format, result.size) == ("WEBP", (64, 64))


@pytest.mark.parametrize(
    ("etl_args", "size", "fmt"),
    [
        ('{"size": [64, 64], "format": "webp"}', (64, 64), "WEBP"),
        ('{"size": "50x20", "fit": "stretch"}', (50, 20), "PNG"),
        ("60x60,contain,jpeg", (60, 40), "JPEG"),  # 3:2 kept inside the box
        ("30x90,cover", (30, 90), "PNG"),
        ("gif", (120, 80), "GIF"),
        ('{"format": "tiff"}', (120, 80), "TIFF"),
    ],
)
def test_size_fit_and_format(
    etl: LocalETL, image: Callable[..., bytes], etl_args: str, size: tuple[int, int], fmt: str
) -> None:
    result = decode(etl.transform(image((120, 80), "png"), etl_args=etl_args))
    assert (result.size, result.format) == (size, fmt)


def test_cover_keeps_the_center(etl: LocalETL, image: Callable[..., bytes]) -> None:
    # The test image's red channel grows from left to right: a centered crop keeps the middle.
    result = decode(etl.transform(image((200, 100), "png"), etl_args="100x100,cover"))
    red_left, red_right = result.getpixel((0, 50))[0], result.getpixel((99, 50))[0]
    assert 50 < red_left < red_right < 205


def test_quality_changes_the_size(etl: LocalETL, image: Callable[..., bytes]) -> None:
    data = image((256, 256), "png")
    low = etl.transform(data, etl_args="jpeg,10")
    high = etl.transform(data, etl_args='{"format": "jpeg", "quality": 95}')
    assert len(low) < len(high)
    assert decode(low).format == decode(high).format == "JPEG"


def test_alpha_becomes_rgb_for_jpeg(etl: LocalETL, image: Callable[..., bytes]) -> None:
    result = decode(etl.transform(image((40, 30), "png", mode="RGBA"), etl_args="jpeg"))
    assert (result.format, result.mode, result.size) == ("JPEG", "RGB", (40, 30))


def test_exif_orientation_is_applied(etl: LocalETL, image: Callable[..., bytes]) -> None:
    source = decode(image((60, 20), "jpeg"))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    buf = io.BytesIO()
    source.save(buf, format="JPEG", exif=exif)
    result = decode(etl.transform(buf.getvalue(), etl_args="png"))
    assert result.size == (20, 60)


@pytest.mark.parametrize(
    ("data", "etl_args", "status", "message"),
    [
        (b"plain text, not an image", "64x64", 415, "not an image Pillow can read"),
        (None, "0x10", 400, "size must be"),
        (None, '{"size": [64]}', 400, "size must be"),
        (None, "avif2", 400, "format must be one of"),
        (None, '{"quality": 0, "format": "jpeg"}', 400, "quality must be 1 to 100"),
        (None, '{"fit": "fill"}', 400, "fit must be one of"),
        (None, '{"width": 10}', 400, "unknown argument 'width'"),
        (None, "{oops", 400, "etl_args is not valid JSON"),
    ],
)
def test_errors(
    etl: LocalETL,
    http_mode: dict[str, Any],
    image: Callable[..., bytes],
    data: bytes | None,
    etl_args: str,
    status: int,
    message: str,
) -> None:
    result = etl.send(data if data is not None else image(), etl_args=etl_args, **http_mode)
    assert result.status == status
    assert result.error is not None and message in result.error


def test_truncated_image_is_415(etl: LocalETL, image: Callable[..., bytes]) -> None:
    result = etl.send(image((64, 64), "jpeg")[:300], etl_args="32x32")
    assert result.status == 415


def test_environment_sets_what_offline_jobs_do(image: Callable[..., bytes]) -> None:
    env = {"SIZE": "32x24", "FORMAT": "jpeg", "QUALITY": "70"}
    with serve(SERVER, env=env, direct_fqn=True) as etl:
        result = decode(etl.transform(image(), comm="hpull", fqn=True))
        assert (result.size, result.format) == ((32, 24), "JPEG")
