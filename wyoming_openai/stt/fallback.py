"""Speech to text by OpenAI, with the local engine answering when OpenAI fails.

Each utterance goes to the OpenAI engine as usual while its audio is also kept (a tee, in
the OpenAI engine's input format). If the OpenAI session fails with an outage
(``BridgeError.outage``: cannot connect, 5xx after retries,
timeout, quota, rate limit), the whole utterance is given to a local session, the rest of
the audio follows it, and the local transcript is the answer: the client sees a transcript,
not an error. Transcript deltas already sent by OpenAI are not repeated: the local session
then only contributes the final transcript. Each fallback is logged once, with its cause.

Hedged (:mod:`wyoming_openai.hedge`): when the OpenAI session says its answer is overdue
(``overdue``), the local session starts at once beside it (the audio so far, then the
rest). The first final transcript wins and the other session is closed; a local one
coming first counts as an outage.

After a fallback, the next utterances go straight to the local engine for
``fallback_retry_after`` seconds (:class:`~wyoming_openai.fallback.LocalHold`), so an
outage does not cost every command OpenAI's deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..audio import AudioFormat
from ..errors import BridgeError, ErrorCode
from ..fallback import LocalHold
from ..hedge import Hedgeable
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
        self._primary_alive = True  # OpenAI may still answer
        self._detector = primary.speech_detector

    def send_audio(self, pcm: bytes) -> None:
        if self._local is not None:
            self._local.send_audio(pcm)
            if self._primary_alive:  # racing: OpenAI goes on too (it feeds the detector)
                self._primary.send_audio(pcm)
            elif self._detector is not None and not self._finished:
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
        if self._local is not None:
            self._local.finish()
        if self._primary_alive:
            self._primary.finish()

    @property
    def speech_detector(self) -> EndOfSpeechDetector | None:
        """The primary's detector; after a fallback this session feeds it itself."""
        return self._detector

    def _start_local(self) -> SttSession:
        """The local session, given the utterance so far (the rest follows it)."""
        tee = bytes(self._tee or b"")
        self._tee = None
        local = self._local = self._open_local()
        local.send_audio(tee)
        if self._finished:
            local.finish()
        return local

    async def results(self) -> AsyncIterator[TranscriptEvent]:
        """OpenAI's events; on an outage (or a local answer first while OpenAI's is
        overdue, :mod:`wyoming_openai.hedge`) the local engine's final transcript."""
        queue: asyncio.Queue[tuple[str, TranscriptEvent | Exception | None]] = asyncio.Queue()

        async def pump(name: str, session: SttSession) -> None:
            try:
                async for event in session.results():
                    queue.put_nowait((name, event))
                queue.put_nowait((name, None))
            except Exception as err:  # a BridgeError, or a fault of ours: raised below
                queue.put_nowait((name, err))

        overdue = self._primary.overdue if isinstance(self._primary, Hedgeable) else None
        pumps = [asyncio.create_task(pump("openai", self._primary), name="stt-openai")]
        watch: asyncio.Task[bool] | None = None
        if overdue is not None and self._tee is not None:
            watch = asyncio.create_task(overdue.wait(), name="stt-hedge-local")
        cause: BridgeError | None = None
        local_error: BridgeError | None = None  # the local hedge failed while OpenAI went on
        try:
            while True:
                if watch is not None and self._local is None:
                    got = asyncio.create_task(queue.get())
                    await asyncio.wait({got, watch}, return_when=asyncio.FIRST_COMPLETED)
                    if not got.done():
                        got.cancel()
                        await asyncio.gather(got, return_exceptions=True)
                        if self._tee is not None:  # not over the tee's limit meanwhile
                            _LOGGER.warning(
                                "OpenAI transcription overdue: transcribing locally in "
                                "parallel (%.1f s of audio so far)",
                                self._format.duration_ms(len(self._tee)) / 1000,
                            )
                            pumps.append(asyncio.create_task(pump("local", self._start_local())))
                        watch = None
                        continue
                    name, item = got.result()
                else:
                    name, item = await queue.get()
                if isinstance(item, Exception) and not isinstance(item, BridgeError):
                    raise item
                if name == "openai":
                    if isinstance(item, BridgeError):
                        self._primary_alive = False
                        if local_error is not None:
                            raise item from local_error
                        if not item.outage or (self._tee is None and self._local is None):
                            raise item
                        cause = item
                        self._hold.trip(cause)
                        await self._primary.aclose()
                        if self._local is not None:
                            how = "already running"
                        else:
                            seconds = self._format.duration_ms(len(self._tee or b"")) / 1000
                            ended = "speech ended" if self._finished else "speech goes on"
                            how = f"{seconds:.1f} s of audio so far, {ended}"
                        _LOGGER.warning(
                            "OpenAI transcription failed (%s): transcribing this utterance "
                            "locally (%s)",
                            cause,
                            how,
                        )
                        if self._local is None:
                            pumps.append(asyncio.create_task(pump("local", self._start_local())))
                        continue
                    if isinstance(item, TranscriptDelta):
                        self._sent_deltas = True
                    if item is not None:
                        yield item
                    if item is None or isinstance(item, TranscriptFinal):
                        return
                    continue
                if isinstance(item, BridgeError):  # the local engine failed
                    if self._primary_alive:
                        _LOGGER.warning("Local transcription (hedge) failed: %s", item)
                        local_error = item
                        continue
                    _LOGGER.warning("Local transcription failed too: %s", item)
                    assert cause is not None
                    raise cause from item
                if item is None:
                    return
                if isinstance(item, TranscriptDelta):
                    if self._sent_deltas or self._primary_alive:
                        continue  # OpenAI's deltas were passed on; only the final text follows
                    yield _marked(item)
                    continue
                if self._primary_alive:  # the local answer came first: OpenAI is out
                    self._primary_alive = False
                    cause = BridgeError(
                        ErrorCode.TIMEOUT, "transcription: no transcript in time (hedged)"
                    )
                    self._hold.trip(cause)
                    _LOGGER.warning(
                        "OpenAI transcription overdue (%s): the local transcript came first",
                        cause,
                    )
                    await self._primary.aclose()
                yield _marked(item)
                return
        finally:
            for task in [*pumps, *([watch] if watch is not None else [])]:
                task.cancel()
            await asyncio.gather(*pumps, *([watch] if watch else []), return_exceptions=True)

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
