"""Speech detection with a real model, fed in batches: where the speech is in each audio clip.

Every object is an audio file (WAV, FLAC, OGG, ...); the result is JSON::

    {"duration": 3.45, "speech": [[0.29, 3.2]], "speech_ratio": 0.843}

The model is Silero VAD, shipped inside the ``silero-vad`` package (nothing is downloaded),
loaded once per worker process in ``__init__``, on the GPU when there is one. Because the
server defines ``transform_batch``, aisetl hands it the objects that arrive together (up to
``max_batch_size``, waiting at most ``max_batch_delay`` seconds) and the model advances all of
them at once: on two CPU cores that is several times the objects per second of one model call
per object (``make bench ARGS=--batching`` measures both). ``AISETL_MAX_BATCH_SIZE`` and
``AISETL_MAX_BATCH_DELAY`` override the class's values.
"""

from __future__ import annotations

from speech_model import AudioError, SpeechModel, decode

from aisetl import FastAPIServer, Item, TransformError


class SpeechDetector(FastAPIServer):
    """Silero VAD over batches of clips."""

    max_batch_size = 32
    max_batch_delay = 0.01

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.model = SpeechModel()
        self.logger.info("Silero VAD loaded on %s", self.model.device)

    def get_mime_type(self) -> str:
        return "application/json"

    def transform_batch(self, items: list[Item]) -> list[bytes | Exception]:
        clips: list = []
        results: list[bytes | Exception | None] = []
        for item in items:
            try:
                data = item.data
                if isinstance(data, str):  # ETL_DIRECT_FQN: the target passed a file path
                    with open(data, "rb") as file:
                        data = file.read()
                clips.append(decode(data))
                results.append(None)
            except AudioError as exc:
                results.append(TransformError(415, str(exc)))
        found = iter(self.model.detect(clips))
        return [next(found).to_json() if r is None else r for r in results]
