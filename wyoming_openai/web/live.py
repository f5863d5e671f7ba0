"""Continuous live transcription: audio for as long as the client talks, one transcript per
utterance.

The server's own end-of-speech detection (:mod:`wyoming_openai.endpointing`, the one the
early transcript uses; the realtime session's detector when it runs one) cuts the stream
into utterances. Each utterance is one :class:`~wyoming_openai.stt.base.SttSession`: when
its speech has ended, the session is finished and the next audio goes into a new one at
once, so nothing is dropped between utterances. A stretch with no speech at all ends its
session without a transcript. Answers leave in utterance order: the words so far
(:class:`Partial`), then :class:`Final` when the utterance is transcribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..audio import AudioFormat
from ..endpointing import EarlyEnd, Endpointer, EndReason
from ..errors import BridgeError, ErrorCode
from ..resample import AudioConverter
from ..stt.base import SttEngine, SttSession, TranscribeRequest, TranscriptDelta

_LOGGER = logging.getLogger(__name__)


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
        self._numbers = itertools.count(1)
        self._ended: asyncio.Queue[_Utterance | None] = asyncio.Queue()
        self._closing: set[asyncio.Task[None]] = set()
        self._answers = asyncio.create_task(self._answer(), name="live-answers")
        self._stopped = False
        self.audio_ms = 0.0
        """Milliseconds of client audio received so far."""

    def add_audio(self, pcm: bytes) -> None:
        """Client PCM (in ``source`` format), in order; ignored after :meth:`stop`."""
        if self._stopped or not pcm:
            return
        utterance = self._current
        if utterance is None:
            utterance = self._current = self._open()
        converted = self._converter.convert(pcm)
        utterance.session.send_audio(converted)
        utterance.endpointer.heard(converted)
        ms = self._source.duration_ms(len(pcm))
        utterance.audio_ms += ms
        self.audio_ms += ms
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
            self._ended.put_nowait(None)
        await asyncio.wait({self._answers})

    async def aclose(self) -> None:
        """Stop at once: no more answers, every upstream session released (idempotent)."""
        self._stopped = True
        self._answers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._answers
        pending = [self._current] if self._current is not None else []
        while not self._ended.empty():
            item = self._ended.get_nowait()
            if item is not None:
                pending.append(item)
        self._current = None
        for utterance in pending:
            await utterance.session.aclose()
        await asyncio.gather(*self._closing, return_exceptions=True)

    def _open(self) -> _Utterance:
        session = self._engine.open(self._request)
        rate = self._engine.input_format.rate
        endpointer = Endpointer(self._policy, session.speech_detector, rate)
        return _Utterance(session, endpointer, next(self._numbers))

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
        if reason is EndReason.NO_SPEECH:  # nothing to transcribe: release it
            task = asyncio.create_task(utterance.session.aclose(), name="live-no-speech")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            return
        utterance.session.finish()
        self._ended.put_nowait(utterance)

    async def _answer(self) -> None:
        """Emit each utterance's answers, one utterance after the other."""
        while (utterance := await self._ended.get()) is not None:
            try:
                await self._answer_one(utterance)
            except BridgeError as err:
                _LOGGER.warning("Live transcription failed: %s", err)
                await self._emit(err)
                return
            finally:
                await utterance.session.aclose()

    async def _answer_one(self, utterance: _Utterance) -> None:
        async for result in utterance.session.results():
            if isinstance(result, TranscriptDelta):
                utterance.words.append(result.text)
                await self._emit(Partial("".join(utterance.words).strip()))
                continue
            text = result.text.strip()
            if text:
                ended = utterance.ended_at or time.monotonic()
                await self._emit(Final(text, (time.monotonic() - ended) * 1000))
            return
