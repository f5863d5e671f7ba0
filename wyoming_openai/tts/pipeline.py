"""Pipelined synthesis: text pieces are synthesized ahead, their audio played in order.

Sentence N+1 is requested while sentence N's audio is still being sent, so no silence
opens between sentences; at most ``lookahead`` requests run at once. Sentence
boundaries come from ``sentence-stream``; a piece longer than the engine's input limit
is split at sentence, then word boundaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sentence_stream import SentenceBoundaryDetector, stream_to_sentences

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


class SentenceSplitter:
    """Streaming text (``synthesize-chunk`` deltas) -> complete sentences, in order."""

    def __init__(self, max_chars: int) -> None:
        self._detector = SentenceBoundaryDetector()
        self._max_chars = max_chars

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


@dataclass
class _Piece:
    text: str
    audio: asyncio.Queue[bytes | BridgeError | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


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
        self._order: asyncio.Queue[_Piece | None] = asyncio.Queue()
        self._pieces: list[_Piece] = []
        self._closed = False

    def add(self, text: str) -> None:
        """Start synthesizing ``text`` (as soon as a slot is free)."""
        if self._closed:
            raise RuntimeError("pipeline closed")
        text = text.strip()
        if not text:
            return
        piece = _Piece(text)
        piece.task = asyncio.create_task(self._produce(piece), name="tts-piece")
        self._pieces.append(piece)
        self._order.put_nowait(piece)

    def close(self) -> None:
        """No more pieces will be added."""
        if not self._closed:
            self._closed = True
            self._order.put_nowait(None)

    @property
    def piece_count(self) -> int:
        """Pieces added so far."""
        return len(self._pieces)

    async def audio(self) -> AsyncIterator[bytes]:
        """PCM chunks of every piece, in order, in the engine's output format.

        Raises:
            BridgeError: a piece could not be synthesized.
        """
        while (piece := await self._order.get()) is not None:
            while (item := await piece.audio.get()) is not None:
                if isinstance(item, BridgeError):
                    raise item
                yield item

    async def aclose(self) -> None:
        """Cancel every synthesis still running."""
        tasks = [piece.task for piece in self._pieces if piece.task and not piece.task.done()]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _produce(self, piece: _Piece) -> None:
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
