"""Realtime speech sessions pooled by voice: reused one response at a time, renewed before
the service's 60-minute limit, and closed in the background when dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ... import metrics
from ... import realtime_wire as wire

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

_LOGGER = logging.getLogger(__name__)

MAX_IDLE_PER_VOICE = 2
"""Idle sessions kept per voice (a stream synthesizes ``tts.lookahead`` pieces at once)."""

SETTLE_WAIT = 1.0
"""Seconds a request waits for a session of its voice that is finishing its previous
response (its trailing events take a few milliseconds) before opening a new one; in a
stream, piece N+2 starts the moment piece N's audio is complete."""


@dataclass(eq=False)
class SpeechSession:
    """One realtime WebSocket session configured for one voice."""

    connection: AsyncRealtimeConnection
    voice: str
    opened_at: float = field(default_factory=time.monotonic)
    responses: int = 0

    @property
    def age(self) -> float:
        """Seconds since the session was opened."""
        return time.monotonic() - self.opened_at


class SpeechSessions:
    """The pool: idle sessions per voice, those finishing a response ("settling"), and the
    background tasks that finish or close them.

    Args:
        max_session_age: seconds a session is used before a fresh one replaces it.
    """

    def __init__(self, max_session_age: float) -> None:
        self._max_session_age = max_session_age
        self._idle: dict[str, list[SpeechSession]] = {}
        self._settling: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._open: set[SpeechSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        """Set by :meth:`aclose`: sessions are no longer kept."""

    async def acquire(
        self, voice: str, open_session: Callable[[str], Awaitable[SpeechSession]]
    ) -> SpeechSession:
        """An idle session of ``voice`` young enough to use (waiting up to
        :data:`SETTLE_WAIT` s for one that is finishing), else ``open_session(voice)``.

        Raises:
            Exception: whatever ``open_session`` raises.
        """
        deadline = time.monotonic() + SETTLE_WAIT
        while True:
            idle = self._idle.get(voice, [])
            while idle:
                session = idle.pop()
                if session.age < self._max_session_age:
                    return session
                _LOGGER.debug("Renewing a realtime session after %.0f s", session.age)
                metrics.renewed("tts")
                self.discard(session)
            remaining = deadline - time.monotonic()
            if not self._settling.get(voice) or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return await open_session(voice)

    def track(self, session: SpeechSession) -> None:
        """Count a newly opened session as open (closed by :meth:`aclose`)."""
        self._open.add(session)

    def settle(self, session: SpeechSession, finish: Callable[[], Awaitable[None]]) -> None:
        """Run ``finish()`` (which ends with :meth:`release` or :meth:`discard`) in the
        background; requests for the voice meanwhile wait a little for the session."""
        self._settling[session.voice] = self._settling.get(session.voice, 0) + 1
        self.spawn(self._settle(session, finish))

    async def _settle(self, session: SpeechSession, finish: Callable[[], Awaitable[None]]) -> None:
        try:
            await finish()
        finally:
            self._settling[session.voice] -= 1
            self._changed.set()
            self._changed = asyncio.Event()

    def release(self, session: SpeechSession) -> None:
        """Make ``session`` idle for its voice (or close it when enough are idle)."""
        idle = self._idle.setdefault(session.voice, [])
        if self.closed or len(idle) >= MAX_IDLE_PER_VOICE:
            self.discard(session)
        else:
            idle.append(session)

    def discard(self, session: SpeechSession) -> None:
        """Close ``session`` in the background; it is never used again."""
        if session in self._open:
            self._open.discard(session)
            self.spawn(wire.close_quietly(session.connection))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the pool owns (cancelled by :meth:`aclose`)."""
        try:
            task = asyncio.get_running_loop().create_task(coro, name="realtime-tts-cleanup")
        except RuntimeError:  # no loop (interpreter shutdown): nothing left to clean up
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel pending clean-ups and close every session."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sessions = list(self._open)
        self._open.clear()
        self._idle.clear()
        await asyncio.gather(
            *(wire.close_quietly(s.connection) for s in sessions), return_exceptions=True
        )
