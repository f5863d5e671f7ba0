"""One Wyoming transcription, bridged to an :class:`SttSession`.

Wyoming side (``homeassistant/components/wyoming/stt.py``, Home Assistant 2026.11):
``transcribe`` (optional, before ``audio-start``), ``audio-start {rate, width, channels}``,
``audio-chunk``*, ``audio-stop``.
Answer: ``transcript-start``, ``transcript-chunk`` per delta, ``transcript {text}``,
``transcript-stop``; Home Assistant takes the first ``transcript`` and ignores the rest.
With ``stt.early_transcript`` an utterance may also end before ``audio-stop``
(:mod:`wyoming_openai.endpointing`); the rest of its audio is then ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from wyoming.asr import Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.error import Error
from wyoming.event import Event

from . import metrics
from .audio import AudioFormat, pcm_to_wav, validate_format
from .endpointing import EarlyEnd, Endpointer, EndReason
from .errors import BridgeError, ErrorCode
from .resample import AudioConverter
from .stt.base import SttEngine, TranscribeRequest, TranscriptDelta

_LOGGER = logging.getLogger(__name__)

WriteEvent = Callable[[Event], Awaitable[None]]

_DUMP_NUMBERS = itertools.count(1)


class Utterance:
    """Audio in, transcript events out, for one utterance.

    The upstream session is opened at construction (Wyoming ``transcribe`` or the first
    ``audio-start``), so connecting overlaps the start of speech. A task owned by the
    utterance writes the transcript events; :meth:`aclose` cancels it and closes the
    session.

    Args:
        engine: the STT engine.
        request: the client's ``transcribe`` request.
        language: language reported in ``transcript`` (request's or configured), or None.
        write: sends one event to the client.
        max_ms: longest utterance accepted, milliseconds of client audio.
        dump_dir: if set, the utterance as sent upstream (the engine's input format) is
            written there as one WAV file at ``audio-stop``, for debugging. Audio only.
        early: when to end the utterance without ``audio-stop`` (``stt.early_transcript``),
            or None to wait for it.
    """

    def __init__(
        self,
        engine: SttEngine,
        request: TranscribeRequest,
        language: str | None,
        write: WriteEvent,
        max_ms: float = 120_000,
        dump_dir: Path | None = None,
        early: EarlyEnd | None = None,
    ) -> None:
        self._engine = engine
        self._dump_dir = dump_dir
        self._dump = bytearray() if dump_dir is not None else None
        self._dump_task: asyncio.Task[None] | None = None
        self._max_ms = max_ms
        self._received_ms = 0.0
        self._language = language
        self._write = write
        self._converter: AudioConverter | None = None
        self._source: AudioFormat | None = None
        self.finished = False
        self._ended_at: float | None = None  # time.monotonic() at audio-stop (or early end)
        self._session = engine.open(request)
        self._endpointer = (
            Endpointer(early, self._session.speech_detector, engine.input_format.rate)
            if early is not None
            else None
        )
        self._task = asyncio.create_task(self._answer(), name="transcript-writer")

    @property
    def has_audio(self) -> bool:
        """Whether ``audio-start`` was received."""
        return self._converter is not None

    def start_audio(self, fmt: AudioFormat) -> None:
        """Wyoming ``audio-start``.

        Raises:
            BridgeError: ``bad-audio-format`` for an impossible format.
        """
        self._converter = self._make_converter(fmt)

    def add_audio(self, fmt: AudioFormat, pcm: bytes) -> None:
        """Wyoming ``audio-chunk``: convert to the engine's format and queue upstream.

        A chunk may declare another format than ``audio-start`` did; it is then
        converted from its own format. After an early end (``early``) chunks are ignored.

        Raises:
            BridgeError: ``audio-without-start`` before ``audio-start``;
                ``bad-audio-format`` for an impossible chunk format;
                ``utterance-too-long`` past ``max_ms`` (with ``early``, the utterance
                ends at its own limit instead).
        """
        if self._converter is None:
            raise BridgeError(ErrorCode.AUDIO_WITHOUT_START, "audio-chunk before audio-start")
        if self.finished:
            return  # ended before audio-stop: the rest of the audio is not needed
        if fmt == self._source:
            if self._endpointer is not None:  # transcribed up to the limit, then it ends
                room = self._endpointer.policy.max_ms - self._received_ms
                pcm = pcm[: max(0, fmt.bytes_for_ms(room))]
            self._received_ms += fmt.duration_ms(len(pcm))
            if self._received_ms > self._max_ms:
                raise BridgeError(
                    ErrorCode.UTTERANCE_TOO_LONG,
                    f"utterance longer than {self._max_ms / 1000:g} s",
                )
        if fmt != self._source:
            self._send(self._converter.flush())
            self._converter = self._make_converter(fmt)
        self._send(self._converter.convert(pcm))
        if self._endpointer is not None:
            reason = self._endpointer.verdict(self._received_ms)
            if reason is not None:
                self._end_early(reason)

    def finish(self) -> None:
        """Wyoming ``audio-stop``: flush the resampler and end the utterance upstream."""
        if self.finished:
            return
        self._end_audio()
        self._session.finish()

    def _end_audio(self) -> None:
        self.finished = True
        self._ended_at = time.monotonic()
        if self._converter is not None:
            self._send(self._converter.flush())
        if self._dump is not None and self._dump_dir is not None:
            self._dump_task = asyncio.create_task(
                asyncio.to_thread(self._write_dump, self._dump_dir, bytes(self._dump))
            )
            self._dump = None

    def _end_early(self, reason: EndReason) -> None:
        """End the utterance before ``audio-stop``: as if it came, or, when nobody spoke,
        with an empty transcript (nothing is transcribed upstream)."""
        level = logging.DEBUG if reason is EndReason.SPEECH_ENDED else logging.INFO
        _LOGGER.log(
            level,
            "Utterance ended before audio-stop (%s) after %.0f ms of audio",
            reason.value,
            self._received_ms,
        )
        if reason is not EndReason.NO_SPEECH:
            self.finish()
            return
        self._end_audio()
        if not self._task.done():  # else an error was written already
            self._task.cancel()
            self._task = asyncio.create_task(
                self._answer_empty(self._task), name="transcript-writer"
            )

    async def _answer_empty(self, cancelled: asyncio.Task[None]) -> None:
        await asyncio.wait({cancelled})  # it closes the session
        with contextlib.suppress(ConnectionError):
            await self._write(TranscriptStart(language=self._language).event())
            await self._write(Transcript(text="", language=self._language).event())
            await self._write(TranscriptStop().event())
            metrics.transcribed("wyoming", self._ended_at)

    def _send(self, pcm: bytes) -> None:
        if self._dump is not None:
            self._dump += pcm
        self._session.send_audio(pcm)
        if self._endpointer is not None:
            self._endpointer.heard(pcm)

    def _write_dump(self, directory: Path, pcm: bytes) -> None:
        """Write one utterance as WAV (runs in a worker thread)."""
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{next(_DUMP_NUMBERS):05d}.wav"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(pcm_to_wav(pcm, self._engine.input_format))
            _LOGGER.debug(
                "Wrote %s (%.0f ms)", name, self._engine.input_format.duration_ms(len(pcm))
            )
        except OSError as err:
            _LOGGER.warning("Cannot write audio dump %s: %s", directory / name, err.strerror)

    async def aclose(self) -> None:
        """Stop writing and release the upstream session (idempotent)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._session.aclose()

    @property
    def done(self) -> bool:
        """Whether the transcript (or an error) has been written."""
        return self._task.done()

    def _make_converter(self, fmt: AudioFormat) -> AudioConverter:
        try:
            validate_format(fmt)
        except ValueError as err:
            raise BridgeError(ErrorCode.BAD_AUDIO_FORMAT, f"unsupported audio: {err}") from None
        self._source = fmt
        return AudioConverter(fmt, self._engine.input_format)

    async def _answer(self) -> None:
        started = False
        try:
            async for result in self._session.results():
                if not started:
                    started = True
                    await self._write(TranscriptStart(language=self._language).event())
                if isinstance(result, TranscriptDelta):
                    await self._write(TranscriptChunk(text=result.text).event())
                    continue
                text = result.text.strip()
                _LOGGER.info("Transcript: %r", text)
                await self._write(Transcript(text=text, language=self._language).event())
                await self._write(TranscriptStop().event())
                metrics.transcribed("wyoming", self._ended_at, result.fallback)
        except BridgeError as err:
            _LOGGER.warning("Transcription failed: %s", err)
            metrics.failed("wyoming", "stt", err.code)
            with contextlib.suppress(ConnectionError):
                await self._write(Error(text=err.message, code=err.code.value).event())
        except ConnectionError as err:
            _LOGGER.debug("Client went away before the transcript: %s", err)
        finally:
            await self._session.aclose()
