"""Configured transcription sessions opened ahead of requests (``stt.warm_sessions``), so
an utterance starts streaming with its first audio instead of after a connect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ... import metrics, upstream
from ... import realtime_wire as wire
from ..base import TranscribeRequest

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

    from .engine import RealtimeSttEngine

_LOGGER = logging.getLogger(__name__)

WARM_RENEW_MARGIN = 300.0
"""A warm session is replaced this many seconds before it expires (at most a quarter of
its lifetime), so no utterance (at most ``limits.max_utterance_seconds``) outlives it."""

WARM_RETRY_FACTOR = 4
"""While the service refuses warm sessions (a bad key, an outage), attempts to open one
are this many times further apart than the engine's retry delays (at most
``4 x RetryPolicy.max_delay``, plus jitter): requests still connect on their own and
report the error."""


@dataclass(eq=False)
class _WarmSession:
    connection: AsyncRealtimeConnection
    config: dict[str, Any]
    renew_at: float  # Unix time, seconds
    watcher: asyncio.Task[None] | None = None
    alive: bool = True


class WarmSessions:
    """Configured transcription sessions opened ahead of requests.

    One task keeps ``size`` sessions ready: it opens them with the configuration of the
    last request seen (language, names, terms; the configured defaults before the first),
    replaces one as soon as it is taken, and renews each ``renew_margin`` seconds before
    it expires (``expires_at`` of ``session.created``; sessions last 60 minutes). While a
    session waits, a watcher reads its events, so one the service ends (expiry, error,
    close) is dropped and replaced at once. Failures to open are retried with growing
    back-off (:data:`WARM_RETRY_FACTOR`) and logged once; requests meanwhile open
    their own sessions and report the error.

    Args:
        engine: the engine whose sessions these are.
        size: sessions to keep ready (0: none, :meth:`take` always returns None).
        renew_margin: seconds before expiry a session is replaced.
    """

    def __init__(self, engine: RealtimeSttEngine, size: int, renew_margin: float) -> None:
        self._engine = engine
        self.size = size
        self._renew_margin = renew_margin
        self._request = TranscribeRequest()
        self._ready: list[_WarmSession] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.opened = 0
        """Warm sessions opened so far (for logs and tests)."""

    @property
    def ready(self) -> int:
        """Sessions ready to be taken now."""
        return sum(1 for warm in self._ready if warm.alive)

    def start(self, after: Awaitable[Any] | None = None) -> None:
        """Start keeping sessions ready, once ``after`` is done (idempotent; needs a
        running event loop)."""
        if self.size > 0 and self._task is None:
            self._task = asyncio.create_task(self._maintain(after), name="stt-warm-sessions")

    def remember(self, request: TranscribeRequest) -> None:
        """Open the next warm sessions with ``request``'s configuration (Home Assistant
        sends the same language every time, so the next request needs no update)."""
        self._request = request

    async def take(self) -> _WarmSession | None:
        """A ready session, no longer watched (the caller owns it), or None."""
        while self._ready:
            warm = self._ready.pop(0)
            self._changed.set()  # open a replacement
            if warm.watcher is not None:
                warm.watcher.cancel()
                await asyncio.wait({warm.watcher})  # no recv() of ours left on it
            if warm.alive and time.time() < warm.renew_at:
                return warm
            self._close_later(warm)
        return None

    async def aclose(self) -> None:
        """Stop opening sessions and close the ready ones."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ready, self._ready = self._ready, []
        for warm in ready:
            if warm.watcher is not None:
                warm.watcher.cancel()
        await asyncio.gather(
            *(w.watcher for w in ready if w.watcher is not None), return_exceptions=True
        )
        await asyncio.gather(
            *(wire.close_quietly(w.connection) for w in ready), return_exceptions=True
        )

    def _close_later(self, warm: _WarmSession) -> None:
        warm.alive = False
        self._engine.close_later(warm.connection)

    async def _maintain(self, after: Awaitable[Any] | None) -> None:
        if after is not None:
            with contextlib.suppress(Exception):
                await after
        failures = 0
        while True:
            now = time.time()
            for warm in [w for w in self._ready if not w.alive or w.renew_at <= now]:
                self._ready.remove(warm)
                if warm.alive:
                    _LOGGER.debug("Renewing a warm transcription session before it expires")
                    metrics.renewed("stt")
                    if warm.watcher is not None:
                        warm.watcher.cancel()
                    self._close_later(warm)
            if len(self._ready) < self.size:
                try:
                    warm = await self._open()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = upstream.from_exception(exc, "opening a warm transcription session")
                    level = logging.WARNING if failures == 0 else logging.DEBUG
                    _LOGGER.log(level, "%s; requests connect on their own meanwhile", error)
                    delay = self._engine.retry.delay(min(failures, 16)) * WARM_RETRY_FACTOR
                    failures += 1
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                self._ready.append(warm)
                continue
            next_renewal = min(w.renew_at for w in self._ready)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, next_renewal - time.time()))

    async def _open(self) -> _WarmSession:
        request = self._request
        async with asyncio.timeout(self._engine.connect_timeout):
            connection, expires_at = await self._engine.open_session(request)
        lifetime = max(0.0, expires_at - time.time())
        margin = min(self._renew_margin, lifetime / 4)
        warm = _WarmSession(
            connection, self._engine.session_config(request), renew_at=expires_at - margin
        )
        warm.watcher = asyncio.create_task(self._watch(warm), name="stt-warm-watch")
        self.opened += 1
        _LOGGER.debug("Warm transcription session ready (renewed in %.0f s)", lifetime - margin)
        return warm

    async def _watch(self, warm: _WarmSession) -> None:
        """Read the waiting session's events: any error or close retires it."""
        try:
            while True:
                event = await wire.recv_event(warm.connection)
                if event.get("type") == "error":
                    _LOGGER.debug("Warm transcription session ended: %s", event.get("error"))
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _LOGGER.debug("Warm transcription session closed: %r", exc)
        warm.alive = False
        self._changed.set()
