"""Speech detection: the real model finds the speech in a recorded sentence, over every delivery
mode, and objects that ran in one batch get what they would get one at a time."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from aisetl.testing import LocalETL, TransformFailed, serve

HERE = Path(__file__).parent
SERVER = str(HERE / "server.py")
RATE = 16000
#: A sentence spoken by a speech synthesizer (espeak-ng), 16 kHz mono, 3.45 s.
SPEECH, _ = sf.read(HERE / "testdata" / "speech.flac", dtype="float32")


def clip(before: float, after: float = 0.5, fmt: str = "wav", rate: int = RATE) -> bytes:
    """The sentence with ``before`` and ``after`` seconds of silence, encoded as ``fmt``."""
    samples = np.concatenate(
        [np.zeros(int(before * RATE)), SPEECH, np.zeros(int(after * RATE))]
    ).astype(np.float32)
    if rate != RATE:
        where = np.arange(0, len(samples), RATE / rate)
        samples = np.interp(where, np.arange(len(samples)), samples)
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt.upper())
    return buf.getvalue()


@pytest.fixture(scope="module")
def stats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batches")


@pytest.fixture(scope="module")
def etl(stats: Path) -> Iterator[LocalETL]:
    # a generous delay, so that objects sent together surely share a batch
    env = {"AISETL_MAX_BATCH_DELAY": "0.2", "AISETL_BATCH_STATS": str(stats)}
    with serve(SERVER, env=env, timeout=120) as running:
        yield running


def speech(result: bytes) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(result)
    return found


def test_finds_the_sentence(etl: LocalETL, mode: dict[str, Any]) -> None:
    found = speech(etl.transform(clip(before=1.0), path="bucket/said.wav", **mode))
    assert found["duration"] == pytest.approx(1.0 + len(SPEECH) / RATE + 0.5, abs=0.01)
    starts = [start for start, _ in found["speech"]]
    ends = [end for _, end in found["speech"]]
    # the sentence starts within 0.3 s of where it was put and ends before the last silence
    assert found["speech"] and 0.9 <= starts[0] <= 1.3, found
    assert 1.0 + len(SPEECH) / RATE - 0.6 <= ends[-1] <= found["duration"], found
    assert 0.5 < found["speech_ratio"] < 0.9


@pytest.mark.parametrize("fmt", ["flac", "ogg"])
def test_other_formats_and_rates(etl: LocalETL, fmt: str) -> None:
    found = speech(etl.transform(clip(before=0.5, fmt=fmt, rate=44100), path=f"b/x.{fmt}"))
    assert found["speech"] and 0.4 <= found["speech"][0][0] <= 0.8, found


def test_silence_has_no_speech(etl: LocalETL) -> None:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(RATE * 2, dtype=np.float32), RATE, format="WAV")
    assert speech(etl.transform(buf.getvalue())) == {
        "duration": 2.0,
        "speech": [],
        "speech_ratio": 0.0,
    }


def test_a_batch_gives_what_one_at_a_time_gives(etl: LocalETL, stats: Path) -> None:
    clips = [clip(before=0.1 * i, after=0.2 * i) for i in range(8)]
    alone = [etl.transform(data, path=f"b/alone-{i}.wav") for i, data in enumerate(clips)]
    before = _batches(stats)
    with ThreadPoolExecutor(len(clips)) as pool:
        together = list(pool.map(lambda i: etl.transform(clips[i], path=f"b/t-{i}.wav"), range(8)))
    assert together == alone
    after = _batches(stats)
    grew = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert any(size > 1 and count > 0 for size, count in grew.items()), (before, after)
    # each clip's speech starts where its silence ends
    for i, result in enumerate(together):
        assert speech(result)["speech"][0][0] == pytest.approx(0.1 * i + 0.05, abs=0.3)


def _batches(folder: Path) -> dict[int, int]:
    """Batch sizes the server's workers wrote (``AISETL_BATCH_STATS``), summed."""
    import time

    time.sleep(0.5)  # the workers write at most every 0.2 s
    sizes: dict[int, int] = {}
    for file in folder.glob("*.json"):
        for size, count in json.loads(file.read_text())["sizes"].items():
            sizes[int(size)] = sizes.get(int(size), 0) + count
    return sizes


def test_not_audio_is_415(etl: LocalETL) -> None:
    with pytest.raises(TransformFailed) as failed:
        etl.transform(b"certainly not audio", path="b/notes.txt")
    assert failed.value.status == 415
    assert "not a decodable audio file" in failed.value.message
    assert "b/notes.txt" in failed.value.message
    assert speech(etl.transform(clip(before=0.2)))["speech"]  # and it goes on
