"""Text to speech by OpenAI, with Piper speaking when OpenAI fails.

Per piece of text (a sentence of a stream, or a whole ``synthesize`` text), as the
synthesis pipeline asks for it:

- OpenAI fails with an outage (``BridgeError.outage``) before
  any audio of the piece came: Piper speaks the piece instead, **in the OpenAI engine's
  format** (24 kHz s16 mono: Piper's 22,050 Hz is resampled), because Home Assistant writes
  one WAV header from the stream's first ``audio-start`` and passes every later chunk
  through unchanged (``homeassistant/components/wyoming/tts.py``, Home Assistant 2026.11).
- OpenAI fails after some audio of the piece was already sent: the piece ends where
  OpenAI stopped and the stream goes on with the next piece. Where the audio broke off
  inside the text is unknown, so speaking the piece again would repeat words and speaking
  "the rest" would guess; an error would fail the whole reply in Home Assistant. The
  listener loses the tail of one sentence; the client never hangs and never hears a word
  twice. Unless the request asks for ``SpeechOptions.whole`` (a file): then it fails.
- Any other failure (refused key, unknown model, bad request) is reported as an error.
- OpenAI's first audio of the piece is overdue (:mod:`wyoming_openai.hedge`): Piper starts
  speaking the piece in parallel and whichever audio comes first is played, the other
  closed. Piper coming first counts as an outage (the hold below trips).

Each fallback is logged once, with its cause. After one, the next pieces go straight to
Piper for ``fallback_retry_after`` seconds (:class:`~wyoming_openai.fallback.LocalHold`),
so a reply's later sentences do not each wait for OpenAI's deadline.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from ..errors import BridgeError, ErrorCode
from ..fallback import LocalHold
from ..hedge import HedgedStream, LatencyTracker
from .base import FallbackAudio, SpeechOptions, TtsEngine, VoiceInfo
from .piper_tts import PiperTtsEngine

_LOGGER = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def _closing(audio: AsyncIterator[bytes]) -> AsyncIterator[AsyncIterator[bytes]]:
    """Close an engine's audio stream (an async generator) when leaving, also on failure or
    when the consumer stops early, so its upstream response is released at once."""
    try:
        yield audio
    finally:
        aclose = getattr(audio, "aclose", None)
        if aclose is not None:
            await aclose()


class FallbackTtsEngine(TtsEngine):
    """The OpenAI engine, covered by Piper (see the module docstring).

    Voices, program and text limit are the OpenAI engine's (it serves); the description
    names the fallback. Piper speaks with its own voice whatever voice was asked for.

    Args:
        primary: the OpenAI engine.
        local: the Piper engine, built with ``output_format=primary.output_format``.
        hold: when to skip OpenAI after a failure.
        first_audio: times OpenAI's first audio of a piece and says when it is overdue
            (default: never).

    Raises:
        ValueError: the two engines do not speak the same format.
    """

    def __init__(
        self,
        primary: TtsEngine,
        local: PiperTtsEngine,
        hold: LocalHold,
        first_audio: LatencyTracker | None = None,
    ) -> None:
        if local.output_format != primary.output_format:
            raise ValueError(
                f"local output format {local.output_format} differs from {primary.output_format}"
            )
        self.primary = primary
        self.local = local
        self._hold = hold
        self.first_audio = first_audio or LatencyTracker.off("speech first audio")
        """Time from a piece to OpenAI's first audio of it; when overdue, Piper races it."""
        self.output_format = primary.output_format
        self.max_text_chars = primary.max_text_chars
        self.program_name = primary.program_name
        self.program_description = (
            f"{primary.program_description}; local Piper {local.default_voice()} if OpenAI fails"
        )
        self.model_attribution = primary.model_attribution

    @property
    def standing_in(self) -> bool:
        """Whether the local engine answers in OpenAI's place now (after a failure)."""
        return self._hold.covering

    @property
    def clause_first(self) -> bool:  # type: ignore[override]
        """Piper's (a reply's first phrase spoken apart) while it stands in; off while
        OpenAI serves, whose first audio does not grow with the text and whose speech
        would break at the cut. Read when a reply starts."""
        return self.standing_in and self.local.clause_first

    @property
    def phrase_language(self) -> str | None:  # type: ignore[override]
        """Piper's voice's language (it speaks the pieces cut while it stands in)."""
        return self.local.phrase_language

    def voices(self) -> list[VoiceInfo]:
        return self.primary.voices()

    def default_voice(self) -> str:
        return self.primary.default_voice()

    def substitute_voice(self, name: str) -> str | None:
        return self.primary.substitute_voice(name)

    async def prepare(self) -> None:
        await self.primary.prepare()
        await self.local.prepare()

    async def synthesize(
        self, text: str, voice: str, options: SpeechOptions | None = None
    ) -> AsyncIterator[bytes]:
        """OpenAI's audio of ``text``, else Piper's (see the module docstring).

        Raises:
            BridgeError: OpenAI failed for another reason than an outage, or Piper failed
                (after an OpenAI failure, that failure is raised).
        """
        cause: BridgeError | None = None
        outage = self._hold.current()
        if outage is None:
            sent_bytes = 0
            after = self.first_audio.overdue_after()
            race = HedgedStream(
                self.primary.synthesize(text, voice, options),
                lambda: self._local_audio(text, options),
                after,
                fatal=lambda err: not err.outage,
                on_hedge=lambda: self.first_audio.hedged("Piper speaks the piece", after or 0.0),
            )
            try:
                async with _closing(race.chunks()) as audio:
                    async for pcm in audio:
                        if not sent_bytes:
                            self._first_audio_came(race, len(text))
                        sent_bytes += len(pcm)
                        yield pcm
                return
            except BridgeError as err:
                if not err.outage or race.winner == "backup":
                    raise
                if "backup" in race.errors:  # Piper was tried (hedging) and failed too
                    _LOGGER.warning("Local speech failed too: %s", race.errors["backup"])
                    raise
                cause = err
            self._hold.trip(cause)
            if sent_bytes and options is not None and options.whole:
                raise cause
            if sent_bytes:
                _LOGGER.warning(
                    "OpenAI speech failed after %.0f ms of a piece's audio (%s): the rest of "
                    "that piece is left out (never repeated), the reply goes on",
                    self.output_format.duration_ms(sent_bytes),
                    cause,
                )
                return
            _LOGGER.warning(
                "OpenAI speech failed (%s): Piper speaks this piece (%d characters)",
                cause,
                len(text),
            )
        else:
            _LOGGER.warning(
                "Piper speaks this piece (%d characters): OpenAI failed %.0f s ago (%s); "
                "it is tried again in %.0f s",
                len(text),
                outage.age(),
                outage.cause,
                self._hold.remaining(outage),
            )
        try:
            async with _closing(self._local_audio(text, options)) as audio:
                async for pcm in audio:
                    yield pcm
        except BridgeError as local_err:
            if cause is None:  # OpenAI was not tried: the local failure is the answer
                raise
            _LOGGER.warning("Local speech failed too: %s", local_err)
            raise cause from local_err

    async def _local_audio(self, text: str, options: SpeechOptions | None) -> AsyncIterator[bytes]:
        """Piper's audio of ``text``, marked as the fallback's (:class:`FallbackAudio`)."""
        async with _closing(
            self.local.synthesize(text, self.local.default_voice(), options)
        ) as audio:
            async for pcm in audio:
                yield FallbackAudio(pcm)

    def _first_audio_came(self, race: HedgedStream, chars: int) -> None:
        """Time OpenAI's first audio; Piper's coming first is an outage (the hold trips)."""
        after = race.first_after or 0.0
        if race.winner == "primary":
            self.first_audio.record(after)
            return
        cause = BridgeError(
            ErrorCode.TIMEOUT, f"speech synthesis: no audio within {after:.2f} s (hedged)"
        )
        self._hold.trip(cause)
        _LOGGER.warning(
            "OpenAI speech overdue (%s): Piper spoke this piece (%d characters) first",
            cause,
            chars,
        )

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.local.aclose()
