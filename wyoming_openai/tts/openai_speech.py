"""Text to speech through ``POST /v1/audio/speech``, streamed.

``response_format: "pcm"`` is raw 24 kHz 16-bit signed little-endian mono with no header
(OpenAI Text to speech guide, "Supported output formats"). The body is read with
``with_streaming_response`` so audio leaves as soon as the first bytes arrive
(``speech.create()`` would buffer the whole body). Body chunks may split a sample: an odd
trailing byte is carried into the next chunk.

Hedged (:mod:`wyoming_openai.hedge`): a request whose first byte is overdue is raced by a
fresh one; the first to answer is played, the other closed, so a stalled request costs
about a second, not ``openai.timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .. import upstream
from ..audio import PCM_24K_MONO
from ..config import TtsSettings
from ..hedge import HedgedStream, LatencyTracker
from ..retry import RetryPolicy
from .base import SpeechOptions, TtsEngine, VoiceInfo

if TYPE_CHECKING:
    from openai import AsyncOpenAI

_LOGGER = logging.getLogger(__name__)

MAX_INPUT_CHARS = 4096
"""``input`` limit of ``/v1/audio/speech``."""

NO_INSTRUCTIONS_MODELS = frozenset({"tts-1", "tts-1-hd"})


class OpenAISpeechEngine(TtsEngine):
    """``/v1/audio/speech`` (OpenAI, or any OpenAI-compatible server).

    Args:
        client: the process's SDK client.
        settings: the ``tts`` settings (model, voices, speed, instructions).
        retry: back-off of a failed request.
        first_byte: times the first byte of responses and says when one is overdue
            (default: never).
    """

    output_format = PCM_24K_MONO
    max_text_chars = MAX_INPUT_CHARS

    def __init__(
        self,
        client: AsyncOpenAI,
        settings: TtsSettings,
        retry: RetryPolicy | None = None,
        first_byte: LatencyTracker | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._retry = retry or RetryPolicy(kind="tts")
        self.first_byte = first_byte or LatencyTracker.off("speech first byte")
        """Time from a request to its first audio byte; when overdue, a fresh request."""

    def voices(self) -> list[VoiceInfo]:
        languages = tuple(self._settings.languages)
        return [
            VoiceInfo(name, f"{name} ({self._settings.model})", languages)
            for name in self._settings.voices
        ]

    def default_voice(self) -> str:
        return self._settings.voice

    def request_params(
        self, text: str, voice: str, options: SpeechOptions | None = None
    ) -> dict[str, Any]:
        """The JSON body of ``/v1/audio/speech`` for ``text`` spoken by ``voice``; the
        ``speed`` and ``instructions`` of ``options`` replace the settings'."""
        settings = self._settings
        options = options or SpeechOptions()
        speed = settings.speed if options.speed is None else options.speed
        instructions = options.instructions or settings.instructions
        params: dict[str, Any] = {
            "model": settings.model,
            "voice": voice,
            "input": text,
            "response_format": "pcm",
        }
        if speed != 1.0:
            params["speed"] = speed
        if instructions and settings.model not in NO_INSTRUCTIONS_MODELS:
            params["instructions"] = instructions
        return params

    async def _open(self, params: dict[str, Any]) -> tuple[Any, Any]:
        """Send the request and read the response head: ``(manager, response)``.

        Raises:
            BridgeError: with the SDK's exception as ``__cause__`` (a retired model is
                recognised from it, ``BridgeError.model_retired``).
        """
        manager = self._client.audio.speech.with_streaming_response.create(**params)
        try:
            return manager, await manager.__aenter__()
        except Exception as exc:
            raise upstream.from_exception(exc, "speech synthesis") from exc

    async def synthesize(
        self, text: str, voice: str, options: SpeechOptions | None = None
    ) -> AsyncIterator[bytes]:
        """The speech of ``text``; a request whose first byte is overdue
        (:attr:`first_byte`) is hedged with a fresh one, the first to answer is played and
        the other closed (:class:`~wyoming_openai.hedge.HedgedStream`).

        Raises:
            BridgeError: the request failed (a fresh one too, if one was started).
        """
        params = self.request_params(text, voice, options)
        tracker = self.first_byte
        after = tracker.overdue_after()
        race = HedgedStream(
            self._stream(params),
            lambda: self._stream(params),
            after,
            fatal=lambda err: not err.retryable,
            on_hedge=lambda: tracker.hedged("a fresh request", after or 0.0),
        )
        async for chunk in race.chunks():
            yield chunk

    async def _stream(self, params: dict[str, Any]) -> AsyncIterator[bytes]:
        """One request's audio in whole frames; its first byte is timed in
        :attr:`first_byte`."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        frame = self.output_format.frame_bytes
        carry = b""
        timed = False
        # Retried (429 rate limit, 5xx, network) only until the response starts: audio
        # already passed on cannot be taken back.
        manager, response = await self._retry.run(
            lambda: self._open(params),
            lambda err: _LOGGER.warning("Retrying speech request: %s", err),
        )
        try:
            async for chunk in response.iter_bytes():
                if not timed:
                    timed = True
                    self.first_byte.record(loop.time() - started)
                data = carry + chunk if carry else chunk
                whole = len(data) - len(data) % frame
                carry = data[whole:]
                if whole:
                    yield data[:whole]
        except Exception as exc:
            raise upstream.from_exception(exc, "speech synthesis") from exc
        finally:
            await manager.__aexit__(None, None, None)
        if carry:
            _LOGGER.debug("Dropping %d trailing byte(s) of a partial sample", len(carry))
