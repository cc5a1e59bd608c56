"""Audio of any common format (FLAC, MP3, OGG, Opus, AAC/M4A, WAV, ...) to WAV, with FFmpeg.

The output is set by the environment:

* ``AR``: sample rate in Hz (default ``16000``);
* ``AC``: number of channels (default ``1``);
* ``CODEC``: FFmpeg audio codec (default ``pcm_s16le``: 16-bit PCM);
* ``FORMAT``: FFmpeg container format (default ``wav``);
* ``FFMPEG_TIMEOUT``: seconds one conversion may take (default ``60``).

The settings are tried once at start-up, so a codec the format cannot hold stops the server with
FFmpeg's own message instead of failing every object.

With ``ETL_DIRECT_FQN=true`` FFmpeg reads the object's file itself when the target passes one
(``transform()`` then receives the path as ``str``); otherwise the bytes are piped to FFmpeg's
standard input. The result always comes back on its standard output.

The ``ffmpeg`` binary is the one shipped in the ``imageio-ffmpeg`` wheel, else ``ffmpeg`` on
``PATH`` (set ``IMAGEIO_FFMPEG_EXE`` to choose another). An object FFmpeg cannot convert is
answered with status 415 and the end of FFmpeg's error output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from aisetl import ConfigError, TransformError
from aisetl.fastapi_server import FastAPIServer

DEFAULTS = {"AR": "16000", "AC": "1", "CODEC": "pcm_s16le", "FORMAT": "wav"}
NAME = re.compile(r"[A-Za-z0-9_]+")
LOG_PREFIX = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\] ")  # "[flac @ 0x55b5df8a9440] "


def find_ffmpeg() -> str:
    """Path of an ffmpeg binary: imageio-ffmpeg's, else the one on ``PATH``."""
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        found = shutil.which("ffmpeg")
        if found is None:
            raise ConfigError(
                "no ffmpeg found: pip install imageio-ffmpeg, or install ffmpeg on PATH"
            ) from None
        return found


def error_summary(stderr: bytes) -> str:
    """FFmpeg's error output in one line: the first lines (the cause) and the last one."""
    lines = [
        LOG_PREFIX.sub("", line).strip() for line in stderr.decode("utf-8", "replace").splitlines()
    ]
    lines = [line for line in lines if line]
    if len(lines) > 3:
        lines = [*lines[:2], "...", lines[-1]]
    return " | ".join(lines) or "no error output"


def fix_wav_sizes(wav: bytes) -> bytes:
    """Write the real sizes into a WAV header that FFmpeg could not seek back to finish."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE" or len(wav) > 0xFFFFFFFF:
        return wav
    offset = 12  # walk the chunks up to "data"
    while offset + 8 <= len(wav) and wav[offset : offset + 4] != b"data":
        size = int.from_bytes(wav[offset + 4 : offset + 8], "little")
        offset += 8 + size + (size & 1)
    if offset + 8 > len(wav):
        return wav
    header = bytearray(wav[: offset + 8])
    header[4:8] = (len(wav) - 8).to_bytes(4, "little")
    header[offset + 4 :] = (len(wav) - offset - 8).to_bytes(4, "little")
    return bytes(header) + wav[offset + 8 :]


class FFmpegServer(FastAPIServer):
    """Converts each audio object to the format, rate and channels set by the environment."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8000) -> None:
        super().__init__(host, port)
        self.ffmpeg = find_ffmpeg()
        settings = {
            name: os.environ.get(name, default).strip() for name, default in DEFAULTS.items()
        }
        for name in ("AR", "AC"):
            if not settings[name].isdigit() or int(settings[name]) == 0:
                raise ConfigError(f"{name}={settings[name]!r} must be a whole number above 0")
        for name in ("CODEC", "FORMAT"):
            if not NAME.fullmatch(settings[name]):
                raise ConfigError(f"{name}={settings[name]!r} is not an FFmpeg name")
        try:
            self.timeout = float(os.environ.get("FFMPEG_TIMEOUT", "60"))
        except ValueError:
            raise ConfigError("FFMPEG_TIMEOUT must be a number of seconds") from None
        if self.timeout <= 0:
            raise ConfigError("FFMPEG_TIMEOUT must be above 0 seconds")
        self.format = settings["FORMAT"]
        self.output_args = [
            *("-map", "0:a:0", "-map_metadata", "-1", "-fflags", "+bitexact"),
            *("-ar", settings["AR"], "-ac", settings["AC"], "-c:a", settings["CODEC"]),
            *("-f", self.format, "pipe:1"),
        ]
        self._self_test()

    def _self_test(self) -> None:
        """Convert a moment of silence, so bad settings stop the server at start-up."""
        run = self.run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "0.01"])
        if run.returncode != 0:
            raise ConfigError(f"ffmpeg rejects the output settings: {error_summary(run.stderr)}")

    def run_ffmpeg(
        self, inputs: list[str], data: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run FFmpeg on ``inputs`` with the output settings; ``data`` goes to its stdin."""
        command = [self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", *inputs]
        try:
            return subprocess.run(
                [*command, *self.output_args], input=data, capture_output=True, timeout=self.timeout
            )
        except subprocess.TimeoutExpired:
            raise TransformError(500, f"ffmpeg took longer than {self.timeout:g} s") from None

    def transform(self, data: bytes | str, path: str, etl_args: str) -> bytes:
        if isinstance(data, str):  # ETL_DIRECT_FQN=true: FFmpeg reads the file itself
            return self.convert(data)
        if data[4:8] == b"ftyp":  # MP4/M4A may keep its index at the end: needs a seekable file
            with tempfile.NamedTemporaryFile(suffix=".m4a") as tmp:
                tmp.write(data)
                tmp.flush()
                return self.convert(tmp.name)
        return self.convert(data)

    def convert(self, source: str | bytes) -> bytes:
        """Convert a file (``source`` is its path) or bytes (piped to FFmpeg's stdin)."""
        if isinstance(source, str):
            run = self.run_ffmpeg(["-protocol_whitelist", "file", "-i", f"file:{source}"])
        else:
            run = self.run_ffmpeg(["-protocol_whitelist", "pipe", "-i", "pipe:0"], source)
        if run.returncode != 0 or not run.stdout:
            if b"0:a:0" in run.stderr:  # the -map option found nothing to take
                raise TransformError(415, "no audio stream in the object")
            raise TransformError(415, f"ffmpeg cannot convert it: {error_summary(run.stderr)}")
        return fix_wav_sizes(run.stdout) if self.format == "wav" else run.stdout
