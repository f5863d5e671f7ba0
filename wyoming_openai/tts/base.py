"""The text-to-speech interface the Wyoming handler depends on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..audio import AudioFormat
from ..errors import BridgeError, ErrorCode


class FallbackAudio(bytes):
    """PCM the local engine spoke in OpenAI's place (:mod:`wyoming_openai.tts.fallback`
    yields it), so a face can tell the client was answered by the fallback."""


@dataclass(frozen=True)
class VoiceInfo:
    """A voice as advertised in Info: ``name`` (what clients send), description, languages."""

    name: str
    description: str
    languages: tuple[str, ...]


@dataclass(frozen=True)
class SpeechOptions:
    """How one request wants its text spoken, over the engine's settings.

    ``speed``: 0.25 to 4.0, 1.0 is normal (OpenAI API reference, Audio > Create speech,
    ``speed``); None keeps the engine's setting. ``instructions``: how to speak (tone,
    accent...), for engines whose model takes them; None keeps the engine's setting.
    Engines that cannot honour a field ignore it. ``whole``: audio that breaks off
    part-way through a text must fail the synthesis (a file must be whole), even where an
    engine would otherwise end that text early and let the reply go on.
    """

    speed: float | None = None
    instructions: str | None = None
    whole: bool = False


class TtsEngine(ABC):
    """A text-to-speech provider."""

    output_format: AudioFormat
    """The PCM format of every chunk :meth:`synthesize` yields."""

    max_text_chars: int
    """Longest text one :meth:`synthesize` call accepts; longer text is split by the caller."""

    clause_first: bool = False
    """Whether a reply's first phrase is worth speaking on its own (as soon as it is
    complete, in a stream): the engine's time to first audio grows with the text (a local
    model synthesizing whole sentences), so the phrase is heard before its sentence is made.
    The phrase is the first sentence's first clause, or its first words
    (:func:`~wyoming_openai.tts.sentences.first_phrase`)."""

    phrase_language: str | None = None
    """The language whose phrase-start words choose where a first sentence without a clause
    is cut (a voice's language code, e.g. ``en_US``); None: cut after a number of words."""

    program_name: str = "openai-tts"
    """Name of the TTS program in Info."""
    program_description: str = "OpenAI text to speech (wyoming-openai)"
    """Description of the TTS program in Info."""
    model_attribution: tuple[str, str] = (
        "OpenAI",
        "https://platform.openai.com/docs/guides/audio",
    )
    """``(name, url)`` credited for the voices in Info."""

    @abstractmethod
    def voices(self) -> list[VoiceInfo]:
        """Voices to advertise in Info; the first is not necessarily the default."""

    @abstractmethod
    def default_voice(self) -> str:
        """The voice used when a request names none."""

    def substitute_voice(self, name: str) -> str | None:
        """The voice to speak a requested ``name`` with that :meth:`voices` lacks, or None to
        reject it (e.g. a ``/v1/audio/speech`` voice after the move to realtime speech)."""
        del name
        return None

    @abstractmethod
    def synthesize(
        self, text: str, voice: str, options: SpeechOptions | None = None
    ) -> AsyncIterator[bytes]:
        """Stream the speech of ``text`` as PCM in :attr:`output_format`; ``options``
        (None: the engine's settings) as far as the engine can honour them.

        Every chunk holds whole frames (a 16-bit sample is never split) and is yielded
        as soon as it arrives from the provider.

        Raises:
            BridgeError: synthesis failed (before or after some audio was yielded).
        """

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Load what the engine needs (voices), off the event loop; called at start-up.

        Raises:
            ConfigError: the engine cannot work with its settings (e.g. a broken voice).
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release process-wide resources."""


def resolve_voice(engine: TtsEngine, name: str | None) -> str:
    """The voice to use: the requested one, else the engine's default.

    Raises:
        BridgeError: ``unknown-voice`` when ``name`` is not offered in Info (and the
            engine has no substitute for it, see :meth:`TtsEngine.substitute_voice`).
    """
    if not name:
        return engine.default_voice()
    names = [voice.name for voice in engine.voices()]
    if name not in names:
        if (substitute := engine.substitute_voice(name)) is not None:
            return substitute
        raise BridgeError(
            ErrorCode.UNKNOWN_VOICE,
            f"unknown voice {name!r}; available: {', '.join(names)}",
        )
    return name
