"""The speech-to-text interface the Wyoming handler depends on.

An :class:`SttEngine` lives for the whole process; it opens one :class:`SttSession`
per utterance. The handler never sees provider events, and an engine never sees a
Wyoming event.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..audio import AudioFormat
from ..errors import BridgeError

if TYPE_CHECKING:
    from ..vad import EndOfSpeechDetector

MIN_UTTERANCE_MS = 100
"""Utterances shorter than this get an empty transcript without asking any engine: the
realtime service rejects a commit of less audio (``input_audio_buffer_commit_empty``,
"buffer too small. Expected at least 100ms of audio"), and every engine answers alike.
"""


@dataclass(frozen=True)
class TranscribeRequest:
    """What the client asked for in ``transcribe`` (all optional in Wyoming).

    Attributes:
        language: ISO-639-1 code of the speech, or ``None`` for the configured default.
        names: ``transcript_names``: proper names that should bias recognition.
        terms: ``transcript_terms``: domain terms that should bias recognition.
        prompt: free text guiding recognition (``prompt`` of ``POST
            /v1/audio/transcriptions``), or ``None`` for the configured ``stt.prompt``.
        live: the audio arrives as it is spoken (a microphone), so an engine may act at
            the end of speech it hears before the utterance ends (``stt.speculative_commit``);
            ``False`` for a recording given whole (an uploaded file), where nothing is gained
            by it and the detector's work would only delay the answer.
    """

    language: str | None = None
    names: tuple[str, ...] = field(default_factory=tuple)
    terms: tuple[str, ...] = field(default_factory=tuple)
    prompt: str | None = None
    live: bool = True


@dataclass(frozen=True)
class TranscriptDelta:
    """A piece of transcript text, in order; the pieces concatenate to the text so far."""

    text: str


@dataclass(frozen=True)
class TranscriptFinal:
    """The whole transcript of the utterance (``""`` when nothing was said); ``fallback``:
    the local engine made it in OpenAI's place (:mod:`wyoming_openai.stt.fallback`)."""

    text: str
    language: str | None = None
    fallback: bool = False


TranscriptEvent = TranscriptDelta | TranscriptFinal


@dataclass(frozen=True)
class SttModelInfo:
    """What Info advertises for one model: its name, description and ISO-639-1 languages."""

    name: str
    description: str
    languages: tuple[str, ...]


ResultQueue = asyncio.Queue[TranscriptEvent | BridgeError]
"""What a session's task produces: events in order, ending with a TranscriptFinal or a
BridgeError."""


async def drain_results(queue: ResultQueue) -> AsyncIterator[TranscriptEvent]:
    """:meth:`SttSession.results` for a session whose task fills ``queue``.

    Raises:
        BridgeError: the error the task put in the queue.
    """
    while True:
        item = await queue.get()
        if isinstance(item, BridgeError):
            raise item
        yield item
        if isinstance(item, TranscriptFinal):
            return


class SttSession(ABC):
    """One utterance being transcribed.

    Lifecycle: :meth:`send_audio` any number of times, :meth:`finish` once, read
    :meth:`results` to the :class:`TranscriptFinal`, then :meth:`aclose` (always, also
    on failure or cancellation; it is idempotent).
    """

    @abstractmethod
    def send_audio(self, pcm: bytes) -> None:
        """Queue ``pcm`` (in the engine's :attr:`SttEngine.input_format`) for sending.

        Never blocks and never drops audio: what arrives before the upstream session is
        ready is kept and sent in order once it is.
        """

    @abstractmethod
    def finish(self) -> None:
        """Mark the end of the utterance (Wyoming ``audio-stop``); never blocks."""

    @abstractmethod
    def results(self) -> AsyncIterator[TranscriptEvent]:
        """Transcript deltas as they come, then exactly one :class:`TranscriptFinal`.

        Raises:
            BridgeError: the utterance could not be transcribed.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Cancel every task of the session and release the upstream connection."""

    @property
    def speech_detector(self) -> EndOfSpeechDetector | None:
        """The end-of-speech detector this session runs on its audio, if it runs one (the
        realtime engine's speculative commit, the local engine's speculative transcription),
        so the caller need not run a second one.

        It is fed every byte given to :meth:`send_audio` before that call returns (until
        :meth:`finish`); callers only read its state.
        """
        return None


class SttEngine(ABC):
    """A speech-to-text provider (OpenAI realtime, OpenAI-compatible HTTP, ...)."""

    input_format: AudioFormat
    """The PCM format :meth:`SttSession.send_audio` takes."""

    program_name: str = "openai-stt"
    """Name of the ASR program in Info (Home Assistant titles the entry after it)."""
    program_description: str = "OpenAI speech to text (wyoming-openai)"
    """Description of the ASR program in Info."""
    model_attribution: tuple[str, str] = (
        "OpenAI",
        "https://platform.openai.com/docs/guides/audio",
    )
    """``(name, url)`` credited for the models in Info."""

    @abstractmethod
    def models(self) -> list[SttModelInfo]:
        """Models to advertise in Info."""

    @abstractmethod
    def open(self, request: TranscribeRequest) -> SttSession:
        """Start a session for one utterance; connecting happens in the background."""

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Load what the engine needs (models), off the event loop; called at start-up.

        Raises:
            ConfigError: the engine cannot work with its settings (e.g. a broken model).
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release process-wide resources (HTTP clients, warm sessions)."""
