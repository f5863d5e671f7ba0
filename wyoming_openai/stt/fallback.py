"""Speech to text by OpenAI, with the local engine answering when OpenAI fails.

Each utterance goes to the OpenAI engine as usual while its audio is also kept (a tee, in
the OpenAI engine's input format). If the OpenAI session fails with an outage
(``BridgeError.outage``: cannot connect, 5xx after retries,
timeout, quota, rate limit), the whole utterance is given to a local session, the rest of
the audio follows it, and the local transcript is the answer: the client sees a transcript,
not an error. Transcript deltas already sent by OpenAI are not repeated: the local session
then only contributes the final transcript. Each fallback is logged once, with its cause.

After a fallback, the next utterances go straight to the local engine for
``fallback_retry_after`` seconds (:class:`~wyoming_openai.fallback.LocalHold`), so an
outage does not cost every command OpenAI's deadline.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..audio import AudioFormat
from ..errors import BridgeError
from ..fallback import LocalHold
from .base import (
    SttEngine,
    SttModelInfo,
    SttSession,
    TranscribeRequest,
    TranscriptDelta,
    TranscriptEvent,
    TranscriptFinal,
)
from .local_whisper import LocalWhisperEngine

if TYPE_CHECKING:
    from ..vad import EndOfSpeechDetector

_LOGGER = logging.getLogger(__name__)

MAX_TEE_SECONDS = 300.0
"""Longest utterance kept for a fallback, seconds; a longer one is not retried locally."""


class FallbackSttEngine(SttEngine):
    """The OpenAI engine, covered by a local one (see the module docstring).

    Info shows the OpenAI engine (it serves), with the fallback named in the description.

    Args:
        primary: the OpenAI engine (realtime or HTTP).
        local: the local engine; it takes audio in ``primary.input_format``.
        hold: when to skip OpenAI after a failure.
    """

    def __init__(self, primary: SttEngine, local: LocalWhisperEngine, hold: LocalHold) -> None:
        self.primary = primary
        self.local = local
        self._hold = hold
        self.input_format: AudioFormat = primary.input_format
        self.program_name = primary.program_name
        self.program_description = (
            f"{primary.program_description}; local Whisper {local.model_name} if OpenAI fails"
        )
        self.model_attribution = primary.model_attribution

    @property
    def standing_in(self) -> bool:
        """Whether the local engine answers in OpenAI's place now (after a failure)."""
        return self._hold.covering

    def models(self) -> list[SttModelInfo]:
        return self.primary.models()

    async def prepare(self) -> None:
        await self.primary.prepare()
        await self.local.prepare()

    def open(self, request: TranscribeRequest) -> SttSession:
        outage = self._hold.current()
        if outage is not None:
            _LOGGER.warning(
                "Transcribing locally: OpenAI failed %.0f s ago (%s); it is tried again in %.0f s",
                outage.age(),
                outage.cause,
                self._hold.remaining(outage),
            )
            return StandInSession(self.local.open(request, source=self.input_format))
        return FallbackSttSession(
            self.primary.open(request),
            lambda: self.local.open(request, source=self.input_format),
            self._hold,
            self.input_format,
        )

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.local.aclose()


class FallbackSttSession(SttSession):
    """One utterance: OpenAI first, the local engine on an outage (module docstring).

    Args:
        primary: the OpenAI session.
        open_local: opens a local session taking audio in the primary's input format.
        hold: told about the outage, so the next utterances go local straight away.
        fmt: the format of the audio given to :meth:`send_audio` (the primary's).
    """

    def __init__(
        self,
        primary: SttSession,
        open_local: Callable[[], SttSession],
        hold: LocalHold,
        fmt: AudioFormat,
    ) -> None:
        self._primary = primary
        self._open_local = open_local
        self._hold = hold
        self._format = fmt
        self._max_tee_bytes = int(fmt.bytes_per_second * MAX_TEE_SECONDS)
        self._tee: bytearray | None = bytearray()  # None: too long to fall back
        self._local: SttSession | None = None
        self._finished = False
        self._sent_deltas = False
        self._detector = primary.speech_detector

    def send_audio(self, pcm: bytes) -> None:
        if self._local is not None:
            self._local.send_audio(pcm)
            if self._detector is not None and not self._finished:
                self._detector.feed(pcm)  # the end of the utterance is still heard
            return
        if self._tee is not None:
            if len(self._tee) + len(pcm) > self._max_tee_bytes:
                _LOGGER.debug("Utterance over %.0f s: no local fallback for it", MAX_TEE_SECONDS)
                self._tee = None
            else:
                self._tee += pcm
        self._primary.send_audio(pcm)

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        (self._local or self._primary).finish()

    @property
    def speech_detector(self) -> EndOfSpeechDetector | None:
        """The primary's detector; after a fallback this session feeds it itself."""
        return self._detector

    async def results(self) -> AsyncIterator[TranscriptEvent]:
        try:
            async for event in self._primary.results():
                if isinstance(event, TranscriptDelta):
                    self._sent_deltas = True
                yield event
            return
        except BridgeError as err:
            if not err.outage or self._tee is None:
                raise
            cause = err
        self._hold.trip(cause)
        await self._primary.aclose()
        tee, self._tee = bytes(self._tee), None
        _LOGGER.warning(
            "OpenAI transcription failed (%s): transcribing this utterance locally "
            "(%.1f s of audio so far%s)",
            cause,
            self._format.duration_ms(len(tee)) / 1000,
            ", speech ended" if self._finished else ", speech goes on",
        )
        local = self._local = self._open_local()
        local.send_audio(tee)
        if self._finished:
            local.finish()
        try:
            async for event in local.results():
                if self._sent_deltas and isinstance(event, TranscriptDelta):
                    continue  # OpenAI's deltas were passed on; only the final text follows
                yield _marked(event)
        except BridgeError as local_err:
            _LOGGER.warning("Local transcription failed too: %s", local_err)
            raise cause from local_err

    async def aclose(self) -> None:
        await self._primary.aclose()
        if self._local is not None:
            await self._local.aclose()


def _marked(event: TranscriptEvent) -> TranscriptEvent:
    """``event``, its final marked as the fallback's (``TranscriptFinal.fallback``)."""
    return replace(event, fallback=True) if isinstance(event, TranscriptFinal) else event


class StandInSession(SttSession):
    """A local session answering while OpenAI is held off (:class:`LocalHold`): the
    local session itself, its final marked as the fallback's."""

    def __init__(self, local: SttSession) -> None:
        self._local = local

    def send_audio(self, pcm: bytes) -> None:
        self._local.send_audio(pcm)

    def finish(self) -> None:
        self._local.finish()

    @property
    def speech_detector(self) -> EndOfSpeechDetector | None:
        return self._local.speech_detector

    async def results(self) -> AsyncIterator[TranscriptEvent]:
        async for event in self._local.results():
            yield _marked(event)

    async def aclose(self) -> None:
        await self._local.aclose()
