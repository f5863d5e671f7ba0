"""Speech to text through ``POST /v1/audio/transcriptions`` (OpenAI-compatible servers).

For servers without the realtime endpoint (Speaches, faster-whisper-server, LocalAI,
Groq...): the utterance is buffered and uploaded as a 16 kHz WAV at ``audio-stop``. With
``stream=true`` the service answers with server-sent events
``transcript.text.delta {delta}`` ... ``transcript.text.done {text}``
(``openai.types.audio.TranscriptionTextDeltaEvent`` / ``...DoneEvent``); ``whisper-1``
ignores ``stream`` and is asked without it (``stream`` in
``openai.types.audio.transcription_create_params``, openai-python 3.57).

A configured model the service reports as retired or unknown
(``BridgeError.model_retired``; ``whisper-1`` and the
``gpt-4o-*-transcribe`` models shut down on 2027-02-26) is retried at once, within the
same utterance, with the current HTTP model (``DEFAULT_MODELS["http"]``); once that
model has answered, the engine stays with it for the life of the process (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from .. import metrics, upstream
from ..audio import PCM_16K_MONO, pcm_to_wav
from ..catalogue import DEFAULT_MODELS
from ..errors import BridgeError
from .base import (
    MIN_UTTERANCE_MS,
    SttSession,
    TranscribeRequest,
    TranscriptDelta,
    TranscriptEvent,
    TranscriptFinal,
    drain_results,
)
from .models import NO_STREAM_MODELS
from .openai_base import OpenAISttEngine

_LOGGER = logging.getLogger(__name__)


SUCCESSOR_MODEL = DEFAULT_MODELS["http"]
"""Where a retired or unknown model moves to."""


class HttpSttEngine(OpenAISttEngine):
    """Transcription by uploading each utterance once it has ended.

    Args:
        client: the process's SDK client.
        settings: the ``stt`` settings.
    """

    input_format = PCM_16K_MONO
    description_format = "{model} (HTTP transcription)"

    def open(self, request: TranscribeRequest) -> HttpSttSession:
        return HttpSttSession(self, request)

    def successor_model(self, model: str, error: BridgeError) -> str | None:
        """The model to retry with after ``model`` failed with ``error``: :data:`SUCCESSOR_MODEL`
        when the service reports ``model`` retired or unknown, else None."""
        if model == SUCCESSOR_MODEL or not error.model_retired:
            return None
        return SUCCESSOR_MODEL

    def adopt(self, model: str, retired: str, reason: BridgeError) -> None:
        """``model`` answered where ``retired`` was refused: use it from now on (logged once)."""
        if self._model == retired:
            self._model = model
            metrics.model_moved("stt", retired, model)
            _LOGGER.warning(
                "Transcription model %s is retired or unknown to the service (%s); using %s "
                "from now on",
                retired,
                reason,
                model,
            )


class HttpSttSession(SttSession):
    """One utterance: buffered until :meth:`finish`, then uploaded by an owned task."""

    def __init__(self, engine: HttpSttEngine, request: TranscribeRequest) -> None:
        self._engine = engine
        self._client = engine.client
        self._request = request
        self._deltas = 0
        self._audio = bytearray()
        self._results: asyncio.Queue[TranscriptEvent | BridgeError] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def send_audio(self, pcm: bytes) -> None:
        if self._task is None:
            self._audio += pcm

    def finish(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._transcribe(), name="http-stt")

    def results(self) -> AsyncIterator[TranscriptEvent]:
        return drain_results(self._results)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._audio = bytearray()

    async def _transcribe(self) -> None:
        if len(self._audio) < PCM_16K_MONO.bytes_for_ms(MIN_UTTERANCE_MS):
            self._results.put_nowait(TranscriptFinal(""))
            return
        wav = pcm_to_wav(bytes(self._audio), PCM_16K_MONO)
        engine = self._engine
        model = engine.model
        try:
            try:
                await self._upload_retrying(wav, model)
            except Exception as exc:
                error = upstream.from_exception(exc, "transcription")
                successor = engine.successor_model(model, error) if not self._deltas else None
                if successor is None:
                    raise error from exc
                try:
                    await self._upload(wav, successor)
                except Exception as exc_again:
                    again = upstream.from_exception(exc_again, "transcription")
                    raise (error if again.model_retired else again) from None
                engine.adopt(successor, model, error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = upstream.from_exception(exc, "transcription")
            _LOGGER.warning("HTTP transcription failed: %s", error)
            self._results.put_nowait(error)

    async def _upload_retrying(self, wav: bytes, model: str) -> None:
        """:meth:`_upload`, retried on transient failures (429 rate limit, 5xx, network,
        timeout) while no delta has been passed on yet.

        Raises:
            BridgeError: the failure, classified (retries ran out, or not retryable).
            Exception: a failure after a delta was passed on (never retried).
        """

        async def attempt() -> None:
            try:
                await self._upload(wav, model)
            except Exception as exc:
                if self._deltas:
                    raise
                raise upstream.from_exception(exc, "transcription") from exc

        await self._engine.retry.run(
            attempt, lambda err: _LOGGER.warning("Retrying transcription upload: %s", err)
        )

    async def _upload(self, wav: bytes, model: str) -> None:
        """Upload the utterance for ``model``; put its deltas and final transcript in the
        results queue.

        Raises:
            Exception: SDK/network errors (classified by ``upstream.from_exception``).
        """
        file = ("utterance.wav", wav, "audio/wav")
        params = self._engine.transcription(self._request, model)
        if model not in NO_STREAM_MODELS:
            text = ""
            stream = await self._client.audio.transcriptions.create(
                file=file, stream=True, **params
            )
            async for event in stream:
                if event.type == "transcript.text.delta":
                    text += event.delta
                    self._deltas += 1
                    self._results.put_nowait(TranscriptDelta(event.delta))
                elif event.type == "transcript.text.done":
                    text = event.text
            self._results.put_nowait(TranscriptFinal(text))
        else:
            result = await self._client.audio.transcriptions.create(file=file, **params)
            self._results.put_nowait(TranscriptFinal(result.text))
