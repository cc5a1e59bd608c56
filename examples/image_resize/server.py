"""Resize and re-encode images with Pillow.

``etl_args`` says how, as JSON or as a comma-separated shorthand in any order::

    {"size": [64, 64], "format": "webp"}      same as  64x64,webp
    {"size": [224, 224], "fit": "contain"}    same as  224x224,contain
    {"format": "jpeg", "quality": 80}         same as  jpeg,80

Arguments (all optional):

* ``size``: ``[width, height]`` in pixels (or ``"WxH"``); unset keeps the size.
* ``fit``: how the image meets ``size``: ``cover`` (default: exactly that size, keeping the
  aspect ratio and cropping the overflow around the center), ``contain`` (fits inside that size,
  keeping the aspect ratio; one side may come out shorter) or ``stretch`` (exactly that size,
  distorting if needed).
* ``format``: ``png``, ``jpeg``, ``webp``, ``gif``, ``bmp`` or ``tiff``; unset keeps the format.
* ``quality``: 1-100, for jpeg and webp (default 85).

The image is turned upright first according to its EXIF orientation; animated images keep their
first frame. Requests without ``etl_args`` (offline bucket-to-bucket jobs carry none) use the
environment: ``SIZE`` (``WxH``), ``FIT``, ``FORMAT`` and ``QUALITY``.

Bad arguments are answered with status 400, objects that are not images Pillow can read with
415, and images over Pillow's decompression-bomb limit with 413.
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from aisetl import ConfigError, TransformError
from aisetl.fastapi_server import FastAPIServer

FORMATS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "jpg": "JPEG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
    "tif": "TIFF",
}
FITS = ("cover", "contain", "stretch")
ARGUMENTS = ("size", "fit", "format", "quality")
MAX_SIDE = 16384
SIZE_TEXT = re.compile(r"(\d+)x(\d+)")


def parse_args(text: str) -> dict[str, Any]:
    """The arguments in ``etl_args``: a JSON object or ``64x64,webp``-style shorthand."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return check_args(json.loads(text))
        except json.JSONDecodeError as exc:
            raise TransformError(400, f"etl_args is not valid JSON: {exc}") from None
    args: dict[str, Any] = {}
    for token in filter(None, (t.strip().lower() for t in text.split(","))):
        if SIZE_TEXT.fullmatch(token):
            args["size"] = token
        elif token in FITS:
            args["fit"] = token
        elif token.isdigit():
            args["quality"] = int(token)
        else:
            args["format"] = token
    return check_args(args)


def check_args(args: dict[str, Any]) -> dict[str, Any]:
    """Validate the arguments and fill in the defaults."""
    unknown = sorted(set(args) - set(ARGUMENTS))
    if unknown:
        raise TransformError(
            400, f"unknown argument {unknown[0]!r}: expected {', '.join(ARGUMENTS)}"
        )
    size = args.get("size")
    if isinstance(size, str) and (match := SIZE_TEXT.fullmatch(size.strip().lower())):
        size = [int(match[1]), int(match[2])]
    if size is not None and not (
        isinstance(size, list)
        and len(size) == 2
        and all(type(side) is int and 1 <= side <= MAX_SIDE for side in size)
    ):
        raise TransformError(
            400, f"size must be [width, height] or 'WxH', each 1 to {MAX_SIDE}, not {size!r}"
        )
    fit = args.get("fit") or "cover"
    if fit not in FITS:
        raise TransformError(400, f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    fmt = args.get("format")
    if fmt is not None and str(fmt).lower() not in FORMATS:
        raise TransformError(
            400, f"format must be one of {', '.join(sorted(FORMATS))}, not {fmt!r}"
        )
    quality = args.get("quality", 85)
    if type(quality) is not int or not 1 <= quality <= 100:
        raise TransformError(400, f"quality must be 1 to 100, not {quality!r}")
    return {
        "size": tuple(size) if size else None,
        "fit": fit,
        "format": FORMATS[str(fmt).lower()] if fmt else None,
        "quality": quality,
    }


def open_image(data: bytes | str) -> Image.Image:
    """Decode an image from bytes or a file path, with clear errors for what is not one."""
    try:
        image = Image.open(data if isinstance(data, str) else io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise TransformError(415, "not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise TransformError(413, f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or damaged image data
        raise TransformError(415, f"damaged image: {exc}") from None
    return image


def resize(image: Image.Image, size: tuple[int, int], fit: str) -> Image.Image:
    """``image`` brought to ``size`` as ``fit`` says."""
    if fit == "cover":
        return ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    if fit == "contain":
        return ImageOps.contain(image, size, Image.Resampling.LANCZOS)
    return image.resize(size, Image.Resampling.LANCZOS)


def encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    """``image`` encoded in Pillow format ``fmt``."""
    if fmt == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")  # JPEG has no alpha channel and no palette
    elif image.mode not in ("RGB", "RGBA", "L", "LA", "P", "1"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buf = io.BytesIO()
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


class ImageResizeServer(FastAPIServer):
    """Resizes and re-encodes each image as ``etl_args`` (or the environment) says."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8000) -> None:
        super().__init__(host, port)
        env: dict[str, Any] = {key: os.environ.get(key.upper(), "").strip() for key in ARGUMENTS}
        if env["quality"].isdigit():
            env["quality"] = int(env["quality"])
        try:
            self.default_args = check_args({key: value for key, value in env.items() if value})
        except TransformError as exc:
            raise ConfigError(f"SIZE / FIT / FORMAT / QUALITY: {exc.message}") from None

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        args = parse_args(etl_args) if etl_args.strip() else self.default_args
        with open_image(data) as source:
            image = ImageOps.exif_transpose(source)
            if args["size"]:
                image = resize(image, args["size"], args["fit"])
            return encode(image, args["format"] or source.format or "PNG", args["quality"])
