"""Pipelined synthesis: text pieces are synthesized ahead, their audio played in order.

Sentence N+1 is requested while sentence N's audio is still being sent, so no silence
opens between sentences; at most ``lookahead`` requests run at once. Sentence
boundaries come from ``sentence-stream``; a piece longer than the engine's input limit
is split at sentence, then word boundaries.

``sentence-stream`` confirms a sentence only when the next chunk starts another one (it
needs the following capital letter), so the first sentence of a streamed reply would wait
for the next text chunk. :meth:`SentenceSplitter.pending_sentence` names the text a chunk
left that already ends like a sentence; the caller starts it at once and, if the next
chunk continues it, withdraws it with :meth:`SynthesisPipeline.retract` (or, when its
audio is already playing, drops its text from what follows with
:meth:`SentenceSplitter.drop_prefix`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sentence_stream import SentenceBoundaryDetector, stream_to_sentences
from sentence_stream.sentence_stream import ABBREVIATION_RE
from sentence_stream.util import remove_asterisks

from ..errors import BridgeError, ErrorCode
from .base import TtsEngine

_LOGGER = logging.getLogger(__name__)


def split_long(text: str, max_chars: int) -> list[str]:
    """Cut one sentence longer than ``max_chars`` at word boundaries (hard cut if none)."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > max_chars:
        cut = rest.rfind(" ", 0, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def split_text(text: str, max_chars: int) -> list[str]:
    """Whole sentences grouped into pieces of at most ``max_chars`` characters.

    Text within the limit stays one piece (one request keeps its prosody whole).
    """
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    pieces: list[str] = []
    current = ""
    for sentence in stream_to_sentences([text]):
        for part in split_long(sentence, max_chars):
            if current and len(current) + 1 + len(part) > max_chars:
                pieces.append(current)
                current = part
            else:
                current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


_SENTENCE_END_RE = re.compile(r"(?:[.!?…]|[؟]|[।॥])+['\"\)\]\}\u2019\u201d»]*$")
"""Text ending like a sentence: ``sentence-stream``'s enders and closers
(``SENTENCE_END``, ``ASCII_CLOSERS``) at the very end."""


class SentenceSplitter:
    """Streaming text (``synthesize-chunk`` deltas) -> complete sentences, in order."""

    def __init__(self, max_chars: int) -> None:
        self._detector = SentenceBoundaryDetector()
        self._max_chars = max_chars

    def pending_sentence(self) -> str | None:
        """The text held back for the next chunk, if it already looks like a whole
        sentence: it ends with sentence punctuation, its last word is not one
        ``sentence-stream`` takes for a possible abbreviation ("Dr.", "Mr."), it has no
        markdown emphasis, and it fits one request. ``None`` otherwise.
        """
        raw = self._detector.current_sentence + self._detector.remaining_text
        text = raw.strip()
        if (
            not text
            or len(text) > self._max_chars
            or not _SENTENCE_END_RE.search(text)
            or ABBREVIATION_RE.search(text[-5:])
            or remove_asterisks(text) != text
        ):
            return None
        return text

    def drop_prefix(self, text: str) -> bool:
        """Forget ``text`` (a :meth:`pending_sentence` already spoken) from the start of
        the held-back text; False if that text no longer starts with it."""
        raw = (self._detector.current_sentence + self._detector.remaining_text).lstrip()
        if not raw.startswith(text):
            return False
        self._detector.current_sentence = ""
        self._detector.remaining_text = raw[len(text) :]
        return True

    def add(self, chunk: str) -> list[str]:
        """Sentences completed by ``chunk``."""
        return [
            part
            for sentence in self._detector.add_chunk(chunk)
            for part in split_long(sentence, self._max_chars)
        ]

    def finish(self) -> list[str]:
        """Whatever text is left at the end of the stream."""
        return split_long(self._detector.finish(), self._max_chars)


@dataclass(eq=False)
class Piece:
    """One text piece of a :class:`SynthesisPipeline`; the handle ``retract`` takes."""

    text: str
    audio: asyncio.Queue[bytes | BridgeError | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    playing: bool = False
    """Some of its audio has been given out."""
    retracted: bool = False


class SynthesisPipeline:
    """Synthesize pieces of text ahead, yield their audio in order.

    Usage: :meth:`add` pieces as they become known, :meth:`close` after the last one,
    iterate :meth:`audio`, and always :meth:`aclose`.

    Args:
        engine: the TTS engine.
        voice: voice name for every piece.
        lookahead: most pieces synthesized at once (the one playing included).
    """

    def __init__(self, engine: TtsEngine, voice: str, lookahead: int) -> None:
        self._engine = engine
        self._voice = voice
        self._slots = asyncio.Semaphore(lookahead)
        self._order: asyncio.Queue[Piece | None] = asyncio.Queue()
        self._pieces: list[Piece] = []
        self._closed = False

    def add(self, text: str) -> Piece | None:
        """Start synthesizing ``text`` (as soon as a slot is free); its audio plays after
        the pieces added before. Returns its handle (None for blank text)."""
        if self._closed:
            raise RuntimeError("pipeline closed")
        text = text.strip()
        if not text:
            return None
        piece = Piece(text)
        piece.task = asyncio.create_task(self._produce(piece), name="tts-piece")
        self._pieces.append(piece)
        self._order.put_nowait(piece)
        return piece

    def retract(self, piece: Piece) -> bool:
        """Withdraw ``piece`` (its synthesis is cancelled and nothing of it is played)
        unless some of its audio has been given out already; returns whether it was."""
        if piece.playing:
            return False
        if not piece.retracted:
            piece.retracted = True
            if piece.task is not None:
                piece.task.cancel()
            piece.audio.put_nowait(None)  # a reader waiting for it moves on
        return True

    def close(self) -> None:
        """No more pieces will be added."""
        if not self._closed:
            self._closed = True
            self._order.put_nowait(None)

    async def audio(self) -> AsyncIterator[bytes]:
        """PCM chunks of every piece, in order, in the engine's output format.

        Raises:
            BridgeError: a piece could not be synthesized.
        """
        while (piece := await self._order.get()) is not None:
            while not piece.retracted and (item := await piece.audio.get()) is not None:
                if piece.retracted:
                    break
                if isinstance(item, BridgeError):
                    raise item
                piece.playing = True
                yield item

    async def aclose(self) -> None:
        """Cancel every synthesis still running."""
        tasks = [piece.task for piece in self._pieces if piece.task and not piece.task.done()]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _produce(self, piece: Piece) -> None:
        async with self._slots:
            try:
                async for chunk in self._engine.synthesize(piece.text, self._voice):
                    piece.audio.put_nowait(chunk)
            except BridgeError as err:
                piece.audio.put_nowait(err)
                return
            except Exception:  # a fault of ours: report it, never leave the reader waiting
                _LOGGER.exception("Synthesis of a piece failed")
                piece.audio.put_nowait(
                    BridgeError(ErrorCode.INTERNAL, "speech synthesis failed: internal error")
                )
                return
            piece.audio.put_nowait(None)
