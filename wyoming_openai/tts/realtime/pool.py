"""Realtime speech sessions per voice: kept warm ahead of requests by the shared
:class:`~wyoming_openai.warm.WarmPool` (one ready session per voice in use, renewed before
the service's 60-minute limit, ``tts.warm_voices`` voices, least recently used closed
first), lent one response at a time, and finished or closed in the background."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...retry import RetryPolicy
from ...warm import Health, Opened, Warm, WarmPool

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

MAX_IDLE_PER_VOICE = 2
"""Ready sessions kept per voice (a stream synthesizes ``tts.lookahead`` pieces at once)."""

SETTLE_WAIT = 1.0
"""Seconds a request waits for a session of its voice that is finishing its previous
response (its trailing events take a few milliseconds) before opening a new one; in a
stream, piece N+2 starts the moment piece N's audio is complete."""


@dataclass(eq=False)
class SpeechSession:
    """One realtime WebSocket session configured for one voice.

    Attributes:
        warm: whether it was open before the request that uses it (opened ahead, or
            used before).
    """

    connection: AsyncRealtimeConnection
    voice: str
    opened_at: float = field(default_factory=time.monotonic)
    responses: int = 0
    warm: bool = False

    @property
    def age(self) -> float:
        """Seconds since the session was opened."""
        return time.monotonic() - self.opened_at


class SpeechSessions:
    """The pool: warm sessions per voice, those finishing a response ("settling"), and
    the background tasks that finish them.

    Args:
        open_session: connects and configures a session for a voice.
        max_voices: voices kept warm (``tts.warm_voices``), least recently used closed first.
        connect_timeout: seconds to open and configure a session.
        retry: back-off between failed attempts to open a warm session.
        ends_session: whether an event read from a waiting session retires it.
        health: told when warm sessions cannot be opened (an outage) and when they can again.
    """

    def __init__(
        self,
        open_session: Callable[[str], Awaitable[Opened[SpeechSession]]],
        *,
        max_voices: int,
        connect_timeout: float,
        retry: RetryPolicy | None = None,
        ends_session: Callable[[dict[str, Any]], bool] | None = None,
        health: Health | None = None,
    ) -> None:
        self._pool: WarmPool[str, SpeechSession] = WarmPool(
            "speech",
            open_session,
            kind="tts",
            spares=1,
            max_keys=max_voices,
            reusable=True,
            connect_timeout=connect_timeout,
            retry=retry,
            max_idle=MAX_IDLE_PER_VOICE,
            ends_session=ends_session,
            health=health,
        )
        self._leases: dict[SpeechSession, Warm[str, SpeechSession]] = {}
        self._settling: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def closed(self) -> bool:
        """Set by :meth:`aclose`: sessions are no longer kept."""
        return self._pool.closed

    @property
    def pool(self) -> WarmPool[str, SpeechSession]:
        """The warm-session pool (its voices, ready sessions, sessions opened ahead)."""
        return self._pool

    def keep_warm(self, voice: str, after: Awaitable[Any] | None = None) -> None:
        """Keep a session of ``voice`` ready from now on (opened once ``after`` is done)."""
        self._pool.use(voice)
        self._pool.start(after)

    async def acquire(self, voice: str) -> SpeechSession:
        """A ready session of ``voice`` (waiting up to :data:`SETTLE_WAIT` s for one that
        is finishing its response), else a new one; either way ``voice`` is kept warm from
        now on. Hand it back with :meth:`settle`, :meth:`release` or :meth:`discard`.

        Raises:
            BridgeError: a new session could not be opened and configured.
        """
        self._pool.use(voice)
        deadline = time.monotonic() + SETTLE_WAIT
        while True:
            warm = await self._pool.take(voice)
            if warm is not None:
                warm.session.warm = True
                self._leases[warm.session] = warm
                return warm.session
            remaining = deadline - time.monotonic()
            if not self._settling.get(voice) or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a
                # cancellation that arrives as the event is set (python/cpython#86296)
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
        warm = await self._pool.open_now(voice)
        self._leases[warm.session] = warm
        return warm.session

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
        """``session`` is ready for its voice again (or closed: see ``WarmPool.give_back``)."""
        warm = self._leases.pop(session, None)
        if warm is not None:
            self._pool.give_back(warm)

    def discard(self, session: SpeechSession) -> None:
        """Close ``session`` in the background; it is never used again."""
        warm = self._leases.pop(session, None)
        if warm is not None:
            self._pool.drop(warm)

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
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in list(self._leases):
            self.discard(session)
        await self._pool.aclose()
