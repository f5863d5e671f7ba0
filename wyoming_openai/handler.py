"""The Wyoming event handler: one per client connection; it only routes events.

Speech-to-text events go to a :class:`~wyoming_openai.transcription.Utterance`,
text-to-speech events to a :class:`~wyoming_openai.synthesis.Synthesis`; both write
their answers from tasks they own, so the read loop keeps reading (audio keeps flowing,
``synthesize-chunk`` keeps arriving) while answers are produced. Unknown events are
ignored: Home Assistant sends new event types to old servers (HA 2025.8 began streaming
TTS), and closing on them breaks it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from . import metrics
from .audio import AudioFormat
from .endpointing import EarlyEnd
from .errors import BridgeError, ErrorCode
from .framing import FrameError, FrameLimits, read_event
from .stt.base import SttEngine, TranscribeRequest
from .synthesis import Synthesis
from .transcription import Utterance
from .tts.base import TtsEngine, resolve_voice

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What every connection shares: engines, the prebuilt ``info`` event, settings.

    Attributes:
        stt: speech-to-text engine.
        tts: text-to-speech engine.
        describe: builds the answer to ``describe`` (engines may change what they
            advertise, e.g. a retired model replaced).
        stt_language: configured default language (ISO-639-1) or None.
        tts_lookahead: text pieces synthesized at once in a stream.
        debug: log every event received (without audio payloads).
        frame_limits: largest event data and payload accepted, bytes.
        max_utterance_ms: longest utterance transcribed, ms of audio.
        max_text_chars: longest text of one synthesis, characters.
        audio_dump_dir: where to write each utterance as WAV (debugging), or None.
        early_end: when an utterance ends without ``audio-stop`` (``stt.early_transcript``),
            or None.
    """

    stt: SttEngine
    tts: TtsEngine
    describe: Callable[[], Event]
    stt_language: str | None
    tts_lookahead: int
    frame_limits: FrameLimits
    max_utterance_ms: float
    max_text_chars: int
    debug: bool = False
    audio_dump_dir: Path | None = None
    early_end: EarlyEnd | None = None


def _audio_format(data: dict[str, object]) -> AudioFormat:
    """``rate`` (Hz), ``width`` (bytes), ``channels`` of an audio event, as integers."""
    values = [data.get(key) for key in ("rate", "width", "channels")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise BridgeError(
            ErrorCode.BAD_AUDIO_FORMAT, "audio events need integer rate, width and channels"
        )
    rate, width, channels = values
    return AudioFormat(rate=rate, width=width, channels=channels)  # type: ignore[arg-type]


def _optional_text(value: object, field_name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BridgeError(ErrorCode.BAD_REQUEST, f"{field_name} must be a string")
    return value


def _text_list(value: object, field_name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BridgeError(ErrorCode.BAD_REQUEST, f"{field_name} must be a list of strings")
    return tuple(item for item in value if item)


def _kind(event: Event) -> metrics.Kind:
    """Whether ``event`` belongs to a synthesis (``synthesize*``) or a transcription."""
    return "tts" if event.type.startswith("synthesize") else "stt"


class WyomingOpenAIHandler(AsyncEventHandler):
    """Routes one connection's events (see the module docstring)."""

    def __init__(
        self,
        services: Services,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(reader, writer)
        self._services = services
        self._write_lock = asyncio.Lock()
        self._request: TranscribeRequest | None = None
        self._utterance: Utterance | None = None
        self._skip_audio = False
        self._synthesis: Synthesis | None = None
        self._finished: list[Utterance | Synthesis] = []

    async def write_event(self, event: Event) -> None:
        """Send one event; answers are written from several tasks, one event at a time."""
        async with self._write_lock:
            await super().write_event(event)

    async def run(self) -> None:
        """Read events with limits (:mod:`wyoming_openai.framing`) until the client leaves.

        A malformed or oversized event is answered with a ``bad-frame`` error, then the
        connection is closed (the byte stream cannot be trusted after it). Everything this
        connection started is cancelled when it ends, however it ends.
        """
        self._is_running = True
        try:
            while self._is_running:
                try:
                    event = await read_event(self.reader, self._services.frame_limits)
                except FrameError as err:
                    _LOGGER.warning("Closing a connection that sent a bad frame: %s", err)
                    await self.write_event(Error(text=str(err), code=ErrorCode.BAD_FRAME).event())
                    break
                if event is None or not await self.handle_event(event):
                    break
        except ConnectionError as err:
            _LOGGER.debug("Connection lost: %r", err)
        finally:
            await self.disconnect()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        if self._services.debug:
            _LOGGER.debug("Received %s %s", event.type, event.data)
        try:
            try:
                await self._route(event)
            except BridgeError as err:
                _LOGGER.warning("Rejected %s: %s", event.type, err)
                metrics.failed("wyoming", _kind(event), err.code)
                await self.write_event(Error(text=err.message, code=err.code.value).event())
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                _LOGGER.warning("Malformed %s event: %r", event.type, err)
                metrics.failed("wyoming", _kind(event), ErrorCode.BAD_REQUEST)
                await self.write_event(
                    Error(text=f"malformed {event.type} event", code=ErrorCode.BAD_REQUEST).event()
                )
            except ConnectionError:
                raise
            except Exception:  # a fault of ours: this event fails, the connection goes on
                _LOGGER.exception("Internal error handling %s", event.type)
                metrics.failed("wyoming", _kind(event), ErrorCode.INTERNAL)
                await self.write_event(
                    Error(text="internal error (see server log)", code=ErrorCode.INTERNAL).event()
                )
        except ConnectionError as err:  # the client is gone
            _LOGGER.debug("Client went away: %r", err)
            return False
        return True

    async def _route(self, event: Event) -> None:
        if AudioChunk.is_type(event.type):  # the hot path first
            await self._on_audio_chunk(event)
        elif Describe.is_type(event.type):
            await self.write_event(self._services.describe())
        elif Transcribe.is_type(event.type):
            await self._on_transcribe(Transcribe.from_event(event))
        elif AudioStart.is_type(event.type):
            await self._on_audio_start(event)
        elif AudioStop.is_type(event.type):
            self._on_audio_stop()
        elif SynthesizeStart.is_type(event.type):
            await self._on_synthesize_start(SynthesizeStart.from_event(event))
        elif SynthesizeChunk.is_type(event.type):
            if self._synthesis is not None and self._synthesis.streaming:
                try:
                    text = _optional_text(SynthesizeChunk.from_event(event).text, "text")
                    self._synthesis.add_text(text or "")
                except BridgeError:
                    await self._synthesis.aclose()  # later chunks are ignored
                    raise
        elif SynthesizeStop.is_type(event.type):
            if self._synthesis is not None and self._synthesis.streaming:
                self._synthesis.finish()
                self._retire_synthesis()
        elif Synthesize.is_type(event.type):
            await self._on_synthesize(Synthesize.from_event(event))
        else:
            _LOGGER.debug("Ignoring unknown event %s", event.type)

    # ------------------------------------------------------------------ STT

    async def _on_transcribe(self, transcribe: Transcribe) -> None:
        self._request = TranscribeRequest(
            language=_optional_text(transcribe.language, "language"),
            names=_text_list(transcribe.transcript_names, "transcript_names"),
            terms=_text_list(transcribe.transcript_terms, "transcript_terms"),
        )
        await self._open_utterance()

    async def _open_utterance(self) -> Utterance:
        if self._utterance is not None:  # a new request replaces an unfinished one
            await self._utterance.aclose()
        request = self._request or TranscribeRequest()
        self._request = None
        self._skip_audio = False
        self._reap()
        self._utterance = Utterance(
            self._services.stt,
            request,
            request.language or self._services.stt_language,
            self.write_event,
            max_ms=self._services.max_utterance_ms,
            dump_dir=self._services.audio_dump_dir,
            early=self._services.early_end,
        )
        return self._utterance

    async def _on_audio_start(self, event: Event) -> None:
        utterance = self._utterance
        if utterance is None or utterance.has_audio:
            utterance = await self._open_utterance()
        try:
            utterance.start_audio(_audio_format(event.data))
        except BridgeError:
            await self._abandon_utterance()  # one error per utterance, not one per chunk
            raise

    async def _on_audio_chunk(self, event: Event) -> None:
        if self._skip_audio:
            return
        if self._utterance is None:
            self._skip_audio = True
            raise BridgeError(ErrorCode.AUDIO_WITHOUT_START, "audio-chunk before audio-start")
        try:
            self._utterance.add_audio(_audio_format(event.data), event.payload or b"")
        except BridgeError:
            await self._abandon_utterance()
            raise

    async def _abandon_utterance(self) -> None:
        """Drop the current utterance after an error; ignore its audio until the next one."""
        if self._utterance is not None:
            await self._utterance.aclose()
            self._utterance = None
        self._skip_audio = True

    def _on_audio_stop(self) -> None:
        if self._skip_audio:
            self._skip_audio = False
            return
        if self._utterance is None or not self._utterance.has_audio:
            raise BridgeError(ErrorCode.AUDIO_WITHOUT_START, "audio-stop before audio-start")
        self._utterance.finish()
        self._finished.append(self._utterance)
        self._utterance = None

    # ------------------------------------------------------------------ TTS

    async def _on_synthesize(self, synthesize: Synthesize) -> None:
        if self._synthesis is not None and self._synthesis.streaming:
            return  # the full text inside a stream repeats the chunks: ignore it
        text = _optional_text(synthesize.text, "text")
        if not text or not text.strip():
            raise BridgeError(ErrorCode.EMPTY_TEXT, "synthesize needs non-empty text")
        voice = resolve_voice(
            self._services.tts,
            _optional_text(synthesize.voice.name if synthesize.voice else None, "voice.name"),
        )
        synthesis = Synthesis(
            self._services.tts,
            voice,
            self._services.tts_lookahead,
            self.write_event,
            False,
            self._services.max_text_chars,
        )
        try:
            synthesis.speak(text)
        except BridgeError:
            await synthesis.aclose()
            raise
        self._finished.append(synthesis)
        self._reap()

    async def _on_synthesize_start(self, start: SynthesizeStart) -> None:
        if self._synthesis is not None:
            await self._synthesis.aclose()
        voice = resolve_voice(
            self._services.tts,
            _optional_text(start.voice.name if start.voice else None, "voice.name"),
        )
        self._synthesis = Synthesis(
            self._services.tts,
            voice,
            self._services.tts_lookahead,
            self.write_event,
            True,
            self._services.max_text_chars,
        )

    def _retire_synthesis(self) -> None:
        if self._synthesis is not None:
            self._finished.append(self._synthesis)
            self._synthesis = None
        self._reap()

    # ------------------------------------------------------------------ lifecycle

    def _reap(self) -> None:
        """Forget answers that are fully written."""
        self._finished = [job for job in self._finished if not job.done]

    async def disconnect(self) -> None:
        """The client is gone: cancel everything this connection started."""
        jobs: list[Utterance | Synthesis] = [*self._finished]
        if self._utterance is not None:
            jobs.append(self._utterance)
        if self._synthesis is not None:
            jobs.append(self._synthesis)
        self._utterance = self._synthesis = None
        self._finished = []
        await asyncio.gather(*(job.aclose() for job in jobs), return_exceptions=True)
