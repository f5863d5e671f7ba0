"""One Wyoming synthesis, plain or streamed, bridged to a :class:`TtsEngine`.

Wyoming side (``homeassistant/components/wyoming/tts.py``, Home Assistant 2026.11):

- plain: ``synthesize {text, voice?}`` -> ``audio-start``, ``audio-chunk``*, ``audio-stop``;
- streamed: ``synthesize-start {voice?}``, ``synthesize-chunk {text}``*, the full-text
  ``synthesize`` (ignored inside a stream), ``synthesize-stop`` -> the audio as above, then
  ``synthesize-stopped``. Home Assistant builds its WAV header from the first
  ``audio-start``, so one stream has exactly one ``audio-start`` and one format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.tts import SynthesizeStopped

from . import metrics
from .errors import BridgeError, ErrorCode
from .tts.base import TtsEngine
from .tts.pipeline import Piece, SynthesisPipeline
from .tts.sentences import PHRASE_REST_MIN_WORDS, SentenceSplitter, first_phrase, split_text

_LOGGER = logging.getLogger(__name__)

WriteEvent = Callable[[Event], Awaitable[None]]


class Synthesis:
    """Text in (whole or streamed), audio events out; owns the task that writes them.

    Args:
        engine: the TTS engine.
        voice: the voice name (see :func:`resolve_voice`).
        lookahead: most text pieces synthesized at once.
        write: sends one event to the client.
        streaming: ``True`` for a ``synthesize-start`` stream (ends with
            ``synthesize-stopped``).
        max_chars: most characters of text, whole or streamed.
    """

    def __init__(
        self,
        engine: TtsEngine,
        voice: str,
        lookahead: int,
        write: WriteEvent,
        streaming: bool,
        max_chars: int = 20_000,
    ) -> None:
        self._engine = engine
        self._max_chars = max_chars
        self._chars = 0
        self._closed = False
        self._write = write
        self.streaming = streaming
        self._pipeline = SynthesisPipeline(engine, voice, lookahead)
        self._splitter = SentenceSplitter(engine.max_text_chars)
        self._tentative: tuple[str, Piece] | None = None  # started before it was confirmed
        self._clause_first = engine.clause_first  # until the first piece is started
        self._language = engine.phrase_language
        self._task = asyncio.create_task(self._play(), name="synthesis-writer")

    def _count(self, text: str) -> None:
        self._chars += len(text)
        if self._chars > self._max_chars:
            raise BridgeError(
                ErrorCode.TEXT_TOO_LONG, f"text longer than {self._max_chars} characters"
            )

    def add_text(self, chunk: str) -> None:
        """Streamed text (``synthesize-chunk``): each completed sentence starts at once,
        and with an engine that speaks phrases sooner (:attr:`TtsEngine.clause_first`) the
        reply's first phrase (its first clause, or first words) does, before its sentence
        is complete.

        A chunk that ends with what looks like a whole sentence starts it at once too,
        before the next chunk confirms it (see :mod:`wyoming_openai.tts.pipeline`); if the
        next chunk continues that sentence, the early start is withdrawn and the longer
        sentence is spoken instead (or, if its audio is already playing, the rest is
        spoken after it).

        Raises:
            BridgeError: ``text-too-long``; the caller then closes the synthesis.
        """
        if self._closed:
            return
        self._count(chunk)
        sentences = self._splitter.add(chunk)
        for sentence in self._settle(sentences, self._splitter.pending_sentence()):
            self._add_piece(sentence)
        if self._clause_first and self._tentative is None:
            phrase = self._splitter.pending_phrase(self._language)
            if phrase is not None and self._splitter.drop_prefix(phrase):
                self._pipeline.add(phrase)
                self._clause_first = False
        pending = self._splitter.pending_sentence()
        if pending is not None and self._tentative is None:
            piece = self._pipeline.add(pending)
            if piece is not None:
                self._tentative = (pending, piece)
                self._clause_first = False  # the first piece is started: no later cut

    def finish(self) -> None:
        """End of the text (``synthesize-stop``): the rest is synthesized."""
        if self._closed:
            return
        for sentence in self._settle(self._splitter.finish(), None):
            self._add_piece(sentence)
        self._pipeline.close()

    def _add_piece(self, text: str) -> None:
        """Synthesize ``text`` after what is queued; the reply's first piece in two, its
        first phrase apart (:func:`first_phrase`), with an engine that speaks phrases
        sooner."""
        if self._clause_first:
            self._clause_first = False
            parts = first_phrase(text, PHRASE_REST_MIN_WORDS, self._language)
            if parts is not None:
                self._pipeline.add(parts[0])
                self._pipeline.add(parts[1])
                return
        self._pipeline.add(text)

    def _settle(self, sentences: list[str], pending: str | None) -> list[str]:
        """Reconcile the sentence started early with what the text turned out to be;
        returns the sentences still to add.

        ``sentences`` are those the splitter just confirmed, ``pending`` its held-back text
        (if it looks like a sentence).
        """
        if self._tentative is None:
            return sentences
        text, piece = self._tentative
        if not sentences and pending == text:
            return sentences  # nothing new yet (e.g. a chunk of whitespace)
        self._tentative = None
        if sentences and sentences[0] == text:
            return sentences[1:]  # confirmed: it is already being synthesized
        if self._pipeline.retract(piece):
            _LOGGER.debug("Sentence started early continues: %r", text)
            return sentences  # the longer sentence comes in its place
        # Its audio is playing: speak only what follows it.
        if sentences and sentences[0].startswith(text):
            rest = sentences[0][len(text) :].strip()
            return ([rest] if rest else []) + sentences[1:]
        if not sentences:
            self._splitter.drop_prefix(text)
        return sentences

    def speak(self, text: str) -> None:
        """The whole text at once (plain ``synthesize``).

        Raises:
            BridgeError: ``text-too-long``.
        """
        self._count(text)
        for piece in split_text(text, self._engine.max_text_chars):
            self._add_piece(piece)
        self._pipeline.close()

    @property
    def done(self) -> bool:
        """Whether every event of the answer has been written."""
        return self._task.done()

    async def aclose(self) -> None:
        """Stop synthesizing and writing (idempotent); later text is ignored."""
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._pipeline.aclose()

    async def _end_reply(self, sent_bytes: int) -> None:
        """``audio-stop`` (and ``synthesize-stopped`` for a stream) after ``sent_bytes``."""
        fmt = self._engine.output_format
        await self._write(AudioStop(timestamp=int(fmt.duration_ms(sent_bytes))).event())
        if self.streaming:
            await self._write(SynthesizeStopped().event())

    async def _play(self) -> None:
        fmt = self._engine.output_format
        start = AudioStart(rate=fmt.rate, width=fmt.width, channels=fmt.channels).event()
        started = False
        sent_bytes = 0
        try:
            async for pcm in self._pipeline.audio():
                if not started:
                    started = True
                    await self._write(start)
                    metrics.first_audio("wyoming", self._pipeline.started_at)
                await self._write(
                    AudioChunk(
                        rate=fmt.rate,
                        width=fmt.width,
                        channels=fmt.channels,
                        audio=pcm,
                        timestamp=int(fmt.duration_ms(sent_bytes)),
                    ).event()
                )
                sent_bytes += len(pcm)
            if not started:
                await self._write(start)
            await self._end_reply(sent_bytes)
            metrics.spoke("wyoming", self._pipeline.fallback)
            _LOGGER.debug("Synthesized %.0f ms of audio", fmt.duration_ms(sent_bytes))
        except BridgeError as err:
            metrics.failed("wyoming", "tts", err.code)
            with contextlib.suppress(ConnectionError):
                if not started:
                    _LOGGER.warning("Synthesis failed: %s", err)
                    await self._write(Error(text=err.message, code=err.code.value).event())
                else:
                    # Part of the reply was already spoken: end it cleanly, so the client
                    # plays what it has instead of waiting or failing the whole reply.
                    _LOGGER.warning(
                        "Synthesis failed after %.0f ms of audio; ending the reply there: %s",
                        fmt.duration_ms(sent_bytes),
                        err,
                    )
                    await self._end_reply(sent_bytes)
        except ConnectionError as err:
            _LOGGER.debug("Client went away during synthesis: %s", err)
        finally:
            await self._pipeline.aclose()
