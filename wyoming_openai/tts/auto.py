"""Which engine speaks: ``tts.mode`` = ``speech``, ``realtime`` or ``auto``.

OpenAI shuts every ``/v1/audio/speech`` model down on 2027-01-06 and points at the
Realtime API instead (openai-python 3.57 ``resources/audio/speech.py``). ``auto`` (the default)
keeps ``/v1/audio/speech`` while the configured speech model is served and, the first
time OpenAI answers that it is retired or unknown, speaks that same request through a
realtime session and stays there for the life of the process, keeping realtime sessions
warm from then on. OpenAI-compatible servers
(any other base URL) keep ``/v1/audio/speech``: they never retire OpenAI's models and
mostly have no realtime endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from .. import metrics
from ..errors import BridgeError
from .base import SpeechOptions, TtsEngine, VoiceInfo
from .openai_speech import OpenAISpeechEngine
from .realtime import RealtimeSpeechEngine

_LOGGER = logging.getLogger(__name__)


class AutoTtsEngine(TtsEngine):
    """``/v1/audio/speech`` until the service reports the speech model retired, then realtime.

    The move happens inside the request that discovered it (before any of its audio was
    yielded), is logged once, and is final. Info, voices and the default voice are those
    of the engine that serves at the time; a voice only ``/v1/audio/speech`` has (fable,
    onyx, nova) is spoken with the realtime default voice after the move.

    Args:
        speech: the ``/v1/audio/speech`` engine.
        realtime: the realtime engine.
        speech_model: the speech engine's model (``tts.model``), for the log.
    """

    def __init__(
        self, speech: OpenAISpeechEngine, realtime: RealtimeSpeechEngine, speech_model: str
    ) -> None:
        if speech.output_format != realtime.output_format:  # pragma: no cover - both 24 kHz
            raise ValueError("both engines must produce the same audio format")
        self._speech = speech
        self._realtime = realtime
        self.output_format = speech.output_format
        self.max_text_chars = min(speech.max_text_chars, realtime.max_text_chars)
        self._speech_model = speech_model
        self._moved = False

    @property
    def active(self) -> TtsEngine:
        """The engine that serves now."""
        return self._realtime if self._moved else self._speech

    def voices(self) -> list[VoiceInfo]:
        return self.active.voices()

    def default_voice(self) -> str:
        return self.active.default_voice()

    def substitute_voice(self, name: str) -> str | None:
        return self.active.substitute_voice(name)

    async def synthesize(
        self, text: str, voice: str, options: SpeechOptions | None = None
    ) -> AsyncIterator[bytes]:
        if not self._moved:
            yielded = False
            try:
                async for chunk in self._speech.synthesize(text, voice, options):
                    yielded = True
                    yield chunk
                return
            except BridgeError as err:
                if yielded or not err.model_retired:
                    raise
                self._move(err)
        async for chunk in self._realtime.synthesize(text, self._realtime_voice(voice), options):
            yield chunk

    async def aclose(self) -> None:
        await self._speech.aclose()
        await self._realtime.aclose()

    def _move(self, reason: BridgeError) -> None:
        if self._moved:
            return
        self._moved = True
        self._realtime.keep_warm()
        metrics.model_moved("tts", self._speech_model, self._realtime.model)
        _LOGGER.warning(
            "Speech model %s is retired or unknown to the service (%s); speaking through the "
            "realtime model %s from now on",
            self._speech_model,
            reason.message,
            self._realtime.model,
        )

    def _realtime_voice(self, voice: str) -> str:
        """``voice`` if the realtime engine has it, else its substitute or default."""
        if voice in {info.name for info in self._realtime.voices()}:
            return voice
        return self._realtime.substitute_voice(voice) or self._realtime.default_voice()
