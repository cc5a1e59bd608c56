"""Silero VAD, batched: where the speech is in many clips at once.

The model is the one the ``silero-vad`` package ships (``silero_vad/data/silero_vad.jit``,
MIT licence), loaded from the installed package: nothing is downloaded. It reads 16 kHz audio
in chunks of 512 samples (32 ms) and keeps a recurrent state per row of its input, so a batch
of clips runs as one matrix of clips x chunks: every step advances all of them. One step for
32 clips costs a fraction of 32 steps for one clip each, which is what batching buys.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass

import numpy as np
import soundfile as sf

RATE = 16000
CHUNK = 512  # samples per model step at 16 kHz
FRAME_SECONDS = CHUNK / RATE
#: A frame at or above this probability starts speech; speech ends below THRESHOLD - 0.15.
THRESHOLD = 0.5
MIN_SPEECH = 0.25  # seconds: shorter bursts are dropped
MIN_SILENCE = 0.1  # seconds: shorter pauses do not split a segment


class AudioError(ValueError):
    """The object is not audio that can be decoded."""


def decode(data: bytes) -> np.ndarray:
    """Any format libsndfile reads (WAV, FLAC, OGG, ...) as 16 kHz mono float32."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f"not a decodable audio file: {exc}") from None
    mono = samples.mean(axis=1)
    if rate != RATE and len(mono):
        # linear interpolation is enough for speech detection (not for listening)
        positions = np.arange(0, len(mono), rate / RATE)
        mono = np.interp(positions, np.arange(len(mono)), mono).astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


@dataclass(frozen=True)
class Speech:
    """Where the speech is in one clip."""

    duration: float  # seconds of audio
    segments: list[tuple[float, float]]  # (start, end) seconds

    def to_json(self) -> bytes:
        """The object the ETL stores."""
        speech = sum(end - start for start, end in self.segments)
        return json.dumps(
            {
                "duration": round(self.duration, 3),
                "speech": [[round(s, 3), round(e, 3)] for s, e in self.segments],
                "speech_ratio": round(speech / self.duration, 3) if self.duration else 0.0,
            }
        ).encode()


def segments(probs: np.ndarray, duration: float) -> list[tuple[float, float]]:
    """Speech segments from per-frame probabilities (hysteresis, minimum lengths)."""
    found: list[tuple[float, float]] = []
    start: int | None = None
    quiet = 0
    min_quiet = round(MIN_SILENCE / FRAME_SECONDS)
    for index, prob in enumerate(probs):
        if start is None:
            if prob >= THRESHOLD:
                start, quiet = index, 0
            continue
        if prob < THRESHOLD - 0.15:
            quiet += 1
            if quiet >= min_quiet:
                found.append((start * FRAME_SECONDS, (index - quiet + 1) * FRAME_SECONDS))
                start = None
        else:
            quiet = 0
    if start is not None:
        found.append((start * FRAME_SECONDS, len(probs) * FRAME_SECONDS))
    return [(s, min(e, duration)) for s, e in found if min(e, duration) - s >= MIN_SPEECH]


class SpeechModel:
    """The Silero VAD model on the GPU when there is one, else on the CPU (one thread)."""

    def __init__(self) -> None:
        import torch
        from silero_vad import load_silero_vad

        self._torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.set_num_threads(1)  # one worker process per core gives the parallelism
        self._model = load_silero_vad().to(self.device)
        self._model.eval()
        # The model keeps its recurrent state inside: one batch at a time.
        self._lock = threading.Lock()

    def detect(self, clips: list[np.ndarray]) -> list[Speech]:
        """Speech segments of each clip, all clips advanced together one chunk per step."""
        torch = self._torch
        steps = max((len(clip) + CHUNK - 1) // CHUNK for clip in clips) if clips else 0
        batch = np.zeros((len(clips), max(steps, 1) * CHUNK), dtype=np.float32)
        for row, clip in enumerate(clips):
            batch[row, : len(clip)] = clip
        audio = torch.from_numpy(batch).to(self.device)
        probs = np.zeros((len(clips), steps), dtype=np.float32)
        with self._lock, torch.inference_mode():
            self._model.reset_states()
            for step in range(steps):
                out = self._model(audio[:, step * CHUNK : (step + 1) * CHUNK], RATE)
                probs[:, step] = out[:, 0].float().cpu().numpy()
        results = []
        for row, clip in enumerate(clips):
            duration = len(clip) / RATE
            own = probs[row, : (len(clip) + CHUNK - 1) // CHUNK]
            results.append(Speech(duration, segments(own, duration)))
        return results
