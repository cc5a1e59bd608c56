"""Cut audio: one segment as an audio file, or many segments as a tar of audio files.

``etl_args`` says what to cut. Times are seconds (``12.5``) or text ``[HH:]MM:SS[.fff]``:

* one segment, the result is that piece of audio::

      {"from_time": 1.5, "to_time": 3}

* many segments, the result is a tar with one file per segment, as a JSON object with
  ``segments``, or as JSON Lines (one segment per line: a manifest)::

      {"segments": [{"from_time": 0, "to_time": 2}, {"from_time": 2, "to_time": 4.5}]}

      {"from_time": 0, "to_time": 2, "name": "intro"}
      {"from_time": 2, "to_time": 4.5, "name": "verse"}

``from_time`` defaults to the start, ``to_time`` to the end; a ``to_time`` past the end is cut
at the end. A segment may have a ``name`` (its file name in the tar, without extension); the
default is ``<object name>_<index>``. ``format`` (top level, or the ``FORMAT`` environment
variable) picks the output format: ``wav`` (default), ``flac`` or ``ogg``.

Input: anything libsndfile reads (WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF, ...). The tar is
streamed one segment at a time, so memory stays the same however many segments there are.
Bad arguments are answered with 400, audio that cannot be read with 415.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import soundfile as sf

from aisetl import ConfigError, TransformError
from aisetl.fastapi_server import FastAPIServer

CHUNK = 256 * 1024
BLOCK_FRAMES = 64 * 1024
SPOOL = 8 * 1024 * 1024  # keep up to this much of one input or segment in memory, the rest on disk
FORMATS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}
SEGMENT_KEYS = ("from_time", "to_time", "name")
LINEAR = ("PCM_", "FLOAT", "DOUBLE")  # sample encodings worth keeping in the segments


@dataclass(frozen=True)
class Segment:
    """A piece of audio to cut, in seconds (``end`` None: to the end)."""

    start: float
    end: float | None
    name: str | None = None


def seconds(value: Any, what: str) -> float:
    """A time in seconds from a number or ``[HH:]MM:SS[.fff]`` text."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        result = 0.0
        for part in str(value).split(":"):  # "1:02.5" -> 62.5
            result = result * 60 + float(part)
    except ValueError:
        raise TransformError(400, f"{what} must be seconds or [HH:]MM:SS, not {value!r}") from None
    if not 0 <= result < float("inf"):
        raise TransformError(400, f"{what} must be a time of 0 or more, not {value!r}")
    return result


def segment(item: Any, where: str) -> Segment:
    """One validated segment from its JSON object."""
    if not isinstance(item, dict):
        raise TransformError(400, f"{where} must be a JSON object with from_time and to_time")
    unknown = sorted(set(item) - set(SEGMENT_KEYS))
    if unknown:
        raise TransformError(
            400, f"{where}: unknown key {unknown[0]!r}, expected from_time, to_time, name"
        )
    start = seconds(item.get("from_time", 0), f"{where}: from_time")
    end = None if item.get("to_time") is None else seconds(item["to_time"], f"{where}: to_time")
    if end is not None and end <= start:
        raise TransformError(400, f"{where}: to_time {end:g} must come after from_time {start:g}")
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip(" ./")):
        raise TransformError(400, f"{where}: name must be non-empty text, not {name!r}")
    return Segment(start, end, posixpath.basename(name.strip()) if name else None)


def parse_args(text: str, default_format: str) -> tuple[list[Segment], bool, str]:
    """The segments to cut, whether the answer is a tar, and the output format."""
    text = text.strip()
    if not text:
        raise TransformError(400, "etl_args must give from_time/to_time or a list of segments")
    try:
        lines = [json.loads(text)]
    except json.JSONDecodeError:
        try:
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise TransformError(400, f"etl_args is not JSON or JSON Lines: {exc}") from None
    fmt = default_format
    if len(lines) > 1:  # a JSON Lines manifest
        return [segment(item, f"line {n}") for n, item in enumerate(lines, 1)], True, fmt
    args = lines[0]
    if not isinstance(args, dict):
        raise TransformError(400, "etl_args must be a JSON object (or JSON Lines of objects)")
    fmt = str(args.pop("format", fmt)).lower()
    if fmt not in FORMATS:
        raise TransformError(400, f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if "segments" not in args:
        return [segment(args, "etl_args")], False, fmt
    items = args.pop("segments")
    if args:
        raise TransformError(400, f"unknown key {sorted(args)[0]!r} next to segments")
    if not isinstance(items, list) or not items:
        raise TransformError(400, "segments must be a non-empty list")
    return [segment(item, f"segment {n}") for n, item in enumerate(items, 1)], True, fmt


def chunks(file: IO[bytes]) -> Iterator[bytes]:
    """The content of ``file`` from where it stands, in pieces."""
    while chunk := file.read(CHUNK):
        yield chunk


def cut(audio: sf.SoundFile, piece: Segment, fmt: str, out: IO[bytes]) -> None:
    """Write ``piece`` of ``audio`` to ``out`` in format ``fmt``, a block at a time."""
    first = round(piece.start * audio.samplerate)
    last = (
        audio.frames
        if piece.end is None
        else min(audio.frames, round(piece.end * audio.samplerate))
    )
    keep = audio.subtype.startswith(LINEAR) and sf.check_format(fmt, audio.subtype)
    subtype = audio.subtype if keep else None  # else the format's default (PCM_16, VORBIS)
    audio.seek(first)
    with sf.SoundFile(out, "w", audio.samplerate, audio.channels, subtype, format=fmt) as dest:
        for block in audio.blocks(BLOCK_FRAMES, frames=last - first, always_2d=True):
            dest.write(block)


def tar_member(name: str, data: IO[bytes], size: int) -> Iterator[bytes]:
    """One file of a tar stream: header, content, padding to the 512-byte block."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(time.time()), 0o644
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    yield from chunks(data)
    if size % tarfile.BLOCKSIZE:
        yield tarfile.NUL * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)


class AudioSplitterServer(FastAPIServer):
    """Cuts each audio object into the segments that ``etl_args`` lists."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8000) -> None:
        super().__init__(host, port)
        self.format = os.environ.get("FORMAT", "wav").strip().lower()
        if self.format not in FORMATS:
            raise ConfigError(f"FORMAT={self.format!r}: use one of {', '.join(FORMATS)}")

    def transform_stream(self, reader: BinaryIO, path: str, etl_args: str) -> Iterator[bytes]:
        pieces, as_tar, fmt = parse_args(etl_args, self.format)
        with self.seekable(reader) as source, self.open_audio(source) as audio:
            duration = audio.frames / audio.samplerate
            for n, piece in enumerate(pieces, 1):  # check all before sending anything
                if piece.start >= duration:
                    where = f"segment {n}: " if as_tar else ""
                    raise TransformError(
                        400,
                        f"{where}from_time {piece.start:g} s is past the end ({duration:.3f} s)",
                    )
            stem = posixpath.splitext(posixpath.basename(path))[0] or "segment"
            for index, piece in enumerate(pieces):
                with tempfile.SpooledTemporaryFile(SPOOL) as out:
                    cut(audio, piece, FORMATS[fmt], out)
                    size = out.seek(0, os.SEEK_END)  # libsndfile may have seeked back to a header
                    out.seek(0)
                    if not as_tar:
                        yield from chunks(out)
                        return
                    yield from tar_member(f"{piece.name or f'{stem}_{index:04d}'}.{fmt}", out, size)
        yield tarfile.NUL * (2 * tarfile.BLOCKSIZE)  # end of archive

    @staticmethod
    def open_audio(source: IO[bytes]) -> sf.SoundFile:
        """Open the audio for reading; what libsndfile cannot read is a 415."""
        try:
            return sf.SoundFile(source)
        except RuntimeError as exc:  # soundfile's LibsndfileError
            reason = getattr(exc, "error_string", str(exc))
            raise TransformError(415, f"cannot read the audio: {reason}") from None

    @staticmethod
    def seekable(reader: BinaryIO) -> IO[bytes]:
        """``reader`` itself when it can seek (a file), else a spooled copy of it."""
        if reader.seekable():
            return reader
        copy = tempfile.SpooledTemporaryFile(SPOOL)  # noqa: SIM115 (the caller closes it)
        shutil.copyfileobj(reader, copy, CHUNK)
        copy.seek(0)
        return copy
