"""Pipelined synthesis: text pieces are synthesized ahead, their audio played in order.

Sentence N+1 is requested while sentence N's audio is still being sent, so no silence
opens between sentences; at most ``lookahead`` requests run at once. A piece started
early (:meth:`~wyoming_openai.tts.sentences.SentenceSplitter.pending_sentence`) can be
withdrawn with :meth:`SynthesisPipeline.retract` when the next chunk continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..errors import BridgeError, ErrorCode
from .base import FallbackAudio, SpeechOptions, TtsEngine

_LOGGER = logging.getLogger(__name__)


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
        options: how every piece is spoken (None: the engine's settings).
    """

    def __init__(
        self,
        engine: TtsEngine,
        voice: str,
        lookahead: int,
        options: SpeechOptions | None = None,
    ) -> None:
        self._engine = engine
        self._voice = voice
        self._options = options
        self._slots = asyncio.Semaphore(lookahead)
        self._order: asyncio.Queue[Piece | None] = asyncio.Queue()
        self._pieces: list[Piece] = []
        self._closed = False
        self.started_at: float | None = None
        """When the first piece was added (``time.monotonic()``), or None."""
        self.fallback = False
        """Whether some audio given out was the local engine's (``FallbackAudio``)."""

    def add(self, text: str) -> Piece | None:
        """Start synthesizing ``text`` (as soon as a slot is free); its audio plays after
        the pieces added before. Returns its handle (None for blank text)."""
        if self._closed:
            raise RuntimeError("pipeline closed")
        text = text.strip()
        if not text:
            return None
        piece = Piece(text)
        self.started_at = self.started_at or time.monotonic()
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
                self.fallback = self.fallback or isinstance(item, FallbackAudio)
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
                # Engines written before options (and test doubles) take two arguments.
                audio = (
                    self._engine.synthesize(piece.text, self._voice)
                    if self._options is None
                    else self._engine.synthesize(piece.text, self._voice, self._options)
                )
                async for chunk in audio:
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
