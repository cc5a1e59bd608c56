"""``make demo``: make a sample bucket of audio clips and images, then convert the audio to WAV.

Runs ``aisetl run examples/ffmpeg/server.py --src demo-data/audio --dst demo-data/wav ...``:
the FFmpeg example as a real server, fed by the emulated AIStore target, with a progress bar
and a summary. Needs the ``examples`` extra (numpy, soundfile, Pillow, imageio-ffmpeg).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Where the demo keeps its data, relative to the current folder.
DEFAULT_ROOT = "demo-data"
FFMPEG_EXAMPLE = Path("examples") / "ffmpeg" / "server.py"
SAMPLE_RATES = (16000, 22050, 44100, 48000)
#: Semitones of a pentatonic scale, for pleasant tones.
_SCALE = (0, 2, 4, 7, 9)


class DemoError(Exception):
    """The demo cannot run; the message says what to install or fix."""


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DemoError(
            f"the demo needs {module}: pip install 'aisetl[examples]' (or run `make demo`)"
        ) from None


def tone(index: int, sample_rate: int, seconds: float = 1.0, channels: int = 1) -> Any:
    """A short synthesized note (a few harmonics, an envelope, a little noise) as float32."""
    np = _need("numpy")
    rng = np.random.default_rng(index)
    octave, step = divmod(index, len(_SCALE))
    freq = 220.0 * 2 ** ((_SCALE[step] + 12 * (octave % 3)) / 12)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k**1.5 for k in (1, 2, 3, 4))
    attack = np.minimum(t / 0.02, 1.0)
    decay = np.exp(-t * rng.uniform(1.5, 4.0))
    signal = 0.5 * wave * attack * decay + 0.01 * rng.standard_normal(t.size)
    signal = signal.astype("float32")
    if channels == 2:
        signal = np.stack([signal, np.roll(signal, 50)], axis=1)
    return signal


def make_audio(folder: Path, count: int) -> int:
    """Write ``count`` one-second clips (FLAC and OGG, mixed rates and channels); return bytes."""
    soundfile = _need("soundfile")
    total = 0
    for i in range(count):
        rate = SAMPLE_RATES[i % len(SAMPLE_RATES)]
        channels = 2 if i % 3 == 0 else 1
        ext, fmt, subtype = ("ogg", "OGG", "VORBIS") if i % 4 == 3 else ("flac", "FLAC", None)
        path = folder / f"speaker-{i % 10:02d}" / f"clip-{i:04d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, tone(i, rate, channels=channels), rate, format=fmt, subtype=subtype)
        total += path.stat().st_size
    return total


def make_images(folder: Path, count: int) -> int:
    """Write ``count`` small PNG and JPEG images (gradients with shapes); return bytes."""
    np = _need("numpy")
    image_mod = _need("PIL.Image")
    draw_mod = _need("PIL.ImageDraw")
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(count):
        rng = np.random.default_rng(1000 + i)
        width, height = int(rng.integers(160, 480)), int(rng.integers(120, 360))
        x = np.linspace(0, 1, width)[None, :]
        y = np.linspace(0, 1, height)[:, None]
        base = rng.uniform(0, 255, 3)
        pixels = np.stack(
            [(base[c] * (0.5 + 0.5 * x) + 80 * y * (c + 1) / 3) % 256 for c in range(3)], axis=2
        ).astype("uint8")
        image = image_mod.fromarray(pixels, "RGB")
        draw = draw_mod.Draw(image)
        for _ in range(4):
            x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
            box = (
                x0,
                y0,
                x0 + int(rng.integers(20, width // 2)),
                y0 + int(rng.integers(20, height // 2)),
            )
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        ext = "png" if i % 2 == 0 else "jpg"
        path = folder / f"image-{i:03d}.{ext}"
        image.save(path, quality=85) if ext == "jpg" else image.save(path)
        total += path.stat().st_size
    return total


def _count(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


def generate(root: Path, clips: int, images: int, *, fresh: bool = False) -> tuple[Path, Path]:
    """Make ``root/audio`` and ``root/images`` unless they already hold that many files."""
    audio, pictures = root / "audio", root / "images"
    for folder, count, make, what in (
        (audio, clips, make_audio, "audio clips"),
        (pictures, images, make_images, "images"),
    ):
        if not fresh and _count(folder) == count:
            print(f"demo: {count} {what} already in {folder}", file=sys.stderr)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        started = time.monotonic()
        size = make(folder, count)
        print(
            f"demo: made {count} {what} in {folder} ({size / 1e6:.1f} MB, "
            f"{time.monotonic() - started:.1f} s)",
            file=sys.stderr,
        )
    return audio, pictures


def find_example(path: Path = FFMPEG_EXAMPLE) -> Path:
    """The FFmpeg example server: under the current folder, else beside the source tree."""
    for candidate in (Path.cwd() / path, Path(__file__).resolve().parents[2] / path):
        if candidate.is_file():
            return candidate
    raise DemoError(f"{path} not found: run the demo from the aisetl repository (make demo)")


def run_args(server: Path, audio: Path, wav: Path, report: Path, workers: int) -> list[str]:
    """The ``aisetl run`` arguments of the demo."""
    return [
        "run",
        os.path.relpath(server),
        "--src",
        os.path.relpath(audio),
        "--dst",
        os.path.relpath(wav),
        "--ext",
        "flac:wav,ogg:wav",
        "--fqn",
        "--env",
        "ETL_DIRECT_FQN=true",
        "--workers",
        str(workers),
        "--concurrency",
        str(4 * workers),
        "--report",
        os.path.relpath(report),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the sample bucket and run the FFmpeg example over it."""
    parser = argparse.ArgumentParser(prog="python -m aisetl.demo", description=__doc__)
    parser.add_argument(
        "--root", default=DEFAULT_ROOT, help=f"data folder (default {DEFAULT_ROOT})"
    )
    parser.add_argument("--clips", type=int, default=300, help="audio clips (default 300)")
    parser.add_argument("--images", type=int, default=40, help="images (default 40)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="server workers")
    parser.add_argument("--fresh", action="store_true", help="generate the data again")
    parser.add_argument("--no-run", action="store_true", help="only generate the data")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.images < 0 or args.workers < 1:
        parser.error("--clips and --workers must be at least 1, --images at least 0")
    root = Path(args.root)
    try:
        audio, _ = generate(root, args.clips, args.images, fresh=args.fresh)
        if args.no_run:
            return 0
        server = find_example()
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    wav = root / "wav"
    shutil.rmtree(wav, ignore_errors=True)
    command = run_args(server, audio, wav, root / "report.json", args.workers)
    print("demo: aisetl " + " ".join(command), file=sys.stderr, flush=True)
    from aisetl.cli import main as aisetl_main

    code = aisetl_main(command)
    if code == 0:
        print(next_steps(root, audio, server), file=sys.stderr)
    return code


def aisetl_command() -> str:
    """How to call this aisetl from the current folder: ``aisetl`` when it is on the PATH."""
    here = Path(sys.executable).parent / "aisetl"
    found = shutil.which("aisetl")
    if found and Path(found).resolve() == here.resolve():
        return "aisetl"
    if here.is_file():
        return os.path.relpath(here)
    return f"{os.path.relpath(sys.executable)} -m aisetl"


def _near(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the current folder when it is below it, else absolute."""
    relative = os.path.relpath(path)
    return str(Path(path).resolve()) if relative.startswith("..") else relative


def next_steps(root: Path, audio: Path, ffmpeg: Path) -> str:
    """The demo's last lines: the next three commands to try."""
    aisetl = aisetl_command()
    resize = _near(ffmpeg.parent.parent / "image_resize" / "server.py")
    clips = sorted(p for p in audio.rglob("*.flac") if p.is_file())
    clip = _near(clips[0]) if clips else _near(audio / "CLIP.flac")
    images = _near(root / "images")
    lines = ["", "demo: done. Next, try:"]
    if aisetl != "aisetl":
        bin_dir = _near(Path(sys.executable).parent)
        lines.append(f"  (or first `source {bin_dir}/activate`: it puts aisetl on your PATH)")
    lines += [
        f"  {aisetl} get {_near(ffmpeg)} {clip} -o {_near(root / 'clip.wav')}",
        f"  {aisetl} run {resize} --src {images} --dst "
        f"{_near(root / 'thumbs')} --env SIZE=128x128 --env FORMAT=webp --ext '*:webp'",
        f"  {aisetl} new my-etl    # your own transformer: a server, a test, a Dockerfile, a spec",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
