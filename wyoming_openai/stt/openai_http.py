"""Speech to text through ``POST /v1/audio/transcriptions`` (OpenAI-compatible servers).

For servers without the realtime endpoint (Speaches, faster-whisper-server, LocalAI,
Groq...): the utterance is buffered and uploaded as a 16 kHz WAV at ``audio-stop``. With
``stream=true`` the service answers with server-sent events
``transcript.text.delta {delta}`` ... ``transcript.text.done {text}``
(``openai.types.audio.TranscriptionTextDeltaEvent`` / ``...DoneEvent``); ``whisper-1``
ignores ``stream`` and is asked without it (``shared/notes/openai.md``, HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..audio import AudioFormat, pcm_to_wav
from ..config import SttSettings
from ..errors import BridgeError
from ..openai_client import bridge_error
from .base import (
    SttEngine,
    SttModelInfo,
    SttSession,
    TranscribeRequest,
    TranscriptDelta,
    TranscriptEvent,
    TranscriptFinal,
)
from .models import NO_STREAM_MODELS, transcription_options

if TYPE_CHECKING:
    from openai import AsyncOpenAI

_LOGGER = logging.getLogger(__name__)

PCM_16K_MONO = AudioFormat(rate=16000, width=2, channels=1)
"""Upload format: Whisper-family models work at 16 kHz, and it is 2/3 the size of 24 kHz."""

MIN_AUDIO_MS = 100
"""Shorter utterances get an empty transcript without a request (as on the realtime path)."""


class HttpSttEngine(SttEngine):
    """Transcription by uploading each utterance once it has ended.

    Args:
        client: the process's SDK client.
        settings: the ``stt`` settings.
    """

    input_format = PCM_16K_MONO

    def __init__(self, client: AsyncOpenAI, settings: SttSettings) -> None:
        self._client = client
        self._settings = settings

    def models(self) -> list[SttModelInfo]:
        return [
            SttModelInfo(
                name=self._settings.model,
                description=f"{self._settings.model} (HTTP transcription)",
                languages=tuple(self._settings.languages),
            )
        ]

    def request_params(self, request: TranscribeRequest) -> dict[str, Any]:
        """Form fields of the upload, without ``file`` and ``stream``."""
        settings = self._settings
        return {
            "model": settings.model,
            **transcription_options(
                settings.model,
                request.language or settings.language,
                settings.prompt,
                request.names,
                request.terms,
            ),
        }

    def open(self, request: TranscribeRequest) -> HttpSttSession:
        return HttpSttSession(
            self._client,
            self.request_params(request),
            stream=self._settings.model not in NO_STREAM_MODELS,
        )


class HttpSttSession(SttSession):
    """One utterance: buffered until :meth:`finish`, then uploaded by an owned task."""

    def __init__(self, client: AsyncOpenAI, params: dict[str, Any], stream: bool) -> None:
        self._client = client
        self._params = params
        self._stream = stream
        self._audio = bytearray()
        self._results: asyncio.Queue[TranscriptEvent | BridgeError] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def send_audio(self, pcm: bytes) -> None:
        if self._task is None:
            self._audio += pcm

    def finish(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._transcribe(), name="http-stt")

    async def results(self) -> AsyncIterator[TranscriptEvent]:
        while True:
            item = await self._results.get()
            if isinstance(item, BridgeError):
                raise item
            yield item
            if isinstance(item, TranscriptFinal):
                return

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._audio = bytearray()

    async def _transcribe(self) -> None:
        if len(self._audio) < PCM_16K_MONO.bytes_for_ms(MIN_AUDIO_MS):
            self._results.put_nowait(TranscriptFinal(""))
            return
        wav = pcm_to_wav(bytes(self._audio), PCM_16K_MONO)
        file = ("utterance.wav", wav, "audio/wav")
        try:
            if self._stream:
                text = ""
                stream = await self._client.audio.transcriptions.create(
                    file=file, stream=True, **self._params
                )
                async for event in stream:
                    if event.type == "transcript.text.delta":
                        text += event.delta
                        self._results.put_nowait(TranscriptDelta(event.delta))
                    elif event.type == "transcript.text.done":
                        text = event.text
                self._results.put_nowait(TranscriptFinal(text))
            else:
                result = await self._client.audio.transcriptions.create(file=file, **self._params)
                self._results.put_nowait(TranscriptFinal(result.text))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = bridge_error(exc, "transcription")
            _LOGGER.warning("HTTP transcription failed: %s", error)
            self._results.put_nowait(error)
