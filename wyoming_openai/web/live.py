"""Continuous live transcription: audio for as long as the client talks, one transcript per
utterance.

The server's own end-of-speech detection (:mod:`wyoming_openai.endpointing`, the one the
early transcript uses; the realtime session's detector when it runs one) cuts the stream
into utterances. Each utterance is one :class:`~wyoming_openai.stt.base.SttSession`: when
its speech has ended, the session is finished and the next audio goes into a new one at
once, so nothing is dropped between utterances. A stretch with no speech at all ends its
session without a transcript. Between utterances no upstream session is open: the audio
waits in a short pre-roll (:data:`PREROLL_MS`, the latest of it) until a local detector
hears speech, so silence costs nothing upstream and the start of the speech is sent with
it. Answers leave in utterance order, as they come: the words
so far (:class:`Partial`), then :class:`Final` when the utterance is transcribed; the
next utterance's words follow that final.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .. import metrics
from ..audio import AudioFormat
from ..endpointing import EarlyEnd, Endpointer, EndReason
from ..errors import BridgeError, ErrorCode
from ..resample import AudioConverter
from ..stt.base import (
    SttEngine,
    SttSession,
    TranscribeRequest,
    TranscriptDelta,
    TranscriptEvent,
)
from ..vad import EndOfSpeechDetector

_LOGGER = logging.getLogger(__name__)

PREROLL_MS = 1000
"""Audio kept while nobody speaks, ms: an utterance starts with this much before the moment
speech was detected (the detector needs a few tens of ms of speech to be sure)."""


@dataclass(frozen=True)
class Partial:
    """The words of the current utterance so far."""

    text: str


@dataclass(frozen=True)
class Final:
    """One utterance's transcript, and milliseconds from the end of its speech (when the
    detector ended it) to this answer."""

    text: str
    latency_ms: float


LiveEvent = Partial | Final | BridgeError
Emit = Callable[[LiveEvent], Awaitable[None]]


@dataclass(eq=False)
class _Utterance:
    session: SttSession
    endpointer: Endpointer
    number: int
    audio_ms: float = 0.0
    ended_at: float | None = None  # time.monotonic() when the detector ended it
    words: list[str] = field(default_factory=list)
    dropped: asyncio.Event = field(default_factory=asyncio.Event)  # no speech: no answer


class LiveTranscription:
    """One live session: client PCM in, :data:`LiveEvent` out through ``emit``.

    Args:
        engine: the STT engine (the process's, shared with every face).
        request: language and biasing for every utterance.
        source: the format of the PCM given to :meth:`add_audio`.
        policy: when an utterance ends (silence after speech, no speech, longest utterance),
            in milliseconds of audio.
        emit: called with each answer, in order; a :class:`BridgeError` ends the session.

    Raises:
        BridgeError: (``__init__``) ``bad-audio-format`` for an impossible ``source``.
    """

    def __init__(
        self,
        engine: SttEngine,
        request: TranscribeRequest,
        source: AudioFormat,
        policy: EarlyEnd,
        emit: Emit,
    ) -> None:
        self._engine = engine
        self._request = request
        self._source = source
        self._policy = policy
        self._emit = emit
        try:
            self._converter = AudioConverter(source, engine.input_format)
        except ValueError as err:
            raise BridgeError(ErrorCode.BAD_AUDIO_FORMAT, f"unsupported audio: {err}") from None
        self._current: _Utterance | None = None
        self._rate = engine.input_format.rate
        self._idle = EndOfSpeechDetector(rate=self._rate)
        self._preroll = bytearray()
        self._preroll_max = engine.input_format.bytes_for_ms(PREROLL_MS)
        self._numbers = itertools.count(1)
        self._utterances: asyncio.Queue[_Utterance | None] = asyncio.Queue()
        self._answers = asyncio.create_task(self._answer(), name="live-answers")
        self._stopped = False
        self.audio_ms = 0.0
        """Milliseconds of client audio received so far."""

    def add_audio(self, pcm: bytes) -> None:
        """Client PCM (in ``source`` format), in order; ignored after :meth:`stop`."""
        if self._stopped or not pcm:
            return
        ms = self._source.duration_ms(len(pcm))
        self.audio_ms += ms
        converted = self._converter.convert(pcm)
        utterance = self._current
        if utterance is None:
            self._idle.feed(converted)
            del self._preroll[: max(0, len(self._preroll) - self._preroll_max)]
            self._preroll += converted  # this chunk whole: the speech may be anywhere in it
            if not self._idle.speech_heard:
                return
            utterance = self._current = self._open()
            converted, self._preroll = bytes(self._preroll), bytearray()
            self._idle = EndOfSpeechDetector(rate=self._rate)
            ms = self._engine.input_format.duration_ms(len(converted))
        utterance.session.send_audio(converted)
        utterance.endpointer.heard(converted)
        utterance.audio_ms += ms
        reason = utterance.endpointer.verdict(utterance.audio_ms)
        if reason is not None:
            self._end(utterance, reason)

    async def stop(self) -> None:
        """End of the stream: the utterance under way is transcribed (if it held speech),
        and every answer has been emitted when this returns."""
        if not self._stopped:
            self._stopped = True
            utterance = self._current
            if utterance is not None:
                utterance.session.send_audio(self._converter.flush())
                heard = utterance.endpointer.speech_heard
                self._end(utterance, EndReason.SPEECH_ENDED if heard else EndReason.NO_SPEECH)
            self._utterances.put_nowait(None)
        await asyncio.wait({self._answers})

    async def aclose(self) -> None:
        """Stop at once: no more answers, every upstream session released (idempotent)."""
        self._stopped = True
        self._answers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._answers
        pending = [self._current] if self._current is not None else []
        while not self._utterances.empty():
            item = self._utterances.get_nowait()
            if item is not None and item is not self._current:
                pending.append(item)
        self._current = None
        for utterance in pending:
            await utterance.session.aclose()

    def _open(self) -> _Utterance:
        session = self._engine.open(self._request)
        rate = self._engine.input_format.rate
        endpointer = Endpointer(self._policy, session.speech_detector, rate)
        utterance = _Utterance(session, endpointer, next(self._numbers))
        self._utterances.put_nowait(utterance)  # its words go out as they come
        return utterance

    def _end(self, utterance: _Utterance, reason: EndReason) -> None:
        """The utterance is over: the next audio opens a new one."""
        self._current = None
        utterance.ended_at = time.monotonic()
        _LOGGER.debug(
            "Live utterance %d ended (%s) after %.0f ms",
            utterance.number,
            reason.value,
            utterance.audio_ms,
        )
        if reason is EndReason.NO_SPEECH:  # nothing to transcribe: released unanswered
            utterance.dropped.set()
            return
        utterance.session.finish()

    async def _answer(self) -> None:
        """Emit each utterance's answers as they come, one utterance after the other."""
        while (utterance := await self._utterances.get()) is not None:
            try:
                await self._answer_one(utterance)
            except BridgeError as err:
                _LOGGER.warning("Live transcription failed: %s", err)
                await self._emit(err)
                return
            finally:
                await utterance.session.aclose()

    async def _answer_one(self, utterance: _Utterance) -> None:
        """Partials and the final of ``utterance``; nothing once it is dropped."""
        results = aiter(utterance.session.results())
        dropped = asyncio.ensure_future(utterance.dropped.wait())
        try:
            while True:
                following = asyncio.ensure_future(anext(results))
                await asyncio.wait({following, dropped}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    return
                try:
                    result = following.result()
                except StopAsyncIteration:
                    return
                if await self._forward(utterance, result):
                    return
        finally:
            dropped.cancel()

    async def _forward(self, utterance: _Utterance, result: TranscriptEvent) -> bool:
        """Emit one result; returns whether it was the final."""
        if isinstance(result, TranscriptDelta):
            utterance.words.append(result.text)
            await self._emit(Partial("".join(utterance.words).strip()))
            return False
        text = result.text.strip()
        metrics.transcribed("websocket", utterance.ended_at, result.fallback)
        if text:
            ended = utterance.ended_at or time.monotonic()
            await self._emit(Final(text, (time.monotonic() - ended) * 1000))
        return True
