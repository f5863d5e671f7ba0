"""Configured transcription sessions opened ahead of requests (``stt.warm_sessions``), so
an utterance starts streaming with its first audio instead of after a connect: the shared
:class:`~wyoming_openai.warm.WarmPool` with one key, each session used up by one
utterance."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ...warm import WARM_RENEW_MARGIN, Health, Opened, Warm, WarmPool
from ..base import TranscribeRequest

if TYPE_CHECKING:
    from .engine import RealtimeSttEngine

__all__ = ["WARM_RENEW_MARGIN", "WarmSessions"]

_KEY = "transcription"
"""The one key: sessions are opened with the last request's configuration."""


class WarmSessions:
    """Configured transcription sessions opened ahead of requests.

    ``size`` sessions are kept ready, opened with the configuration of the last request
    seen (language, names, terms; the configured defaults before the first); one is
    replaced as soon as it is taken, renewed before it expires and replaced when the
    service ends it (:class:`~wyoming_openai.warm.WarmPool`). Requests meanwhile open
    their own sessions and report their own errors.

    Args:
        engine: the engine whose sessions these are.
        size: sessions to keep ready (0: none, :meth:`take` always returns None).
        renew_margin: seconds before expiry a session is replaced.
        health: told when sessions cannot be opened (an outage) and when they can again.
    """

    def __init__(
        self,
        engine: RealtimeSttEngine,
        size: int,
        renew_margin: float,
        health: Health | None = None,
    ) -> None:
        self._engine = engine
        self._request = TranscribeRequest()
        self._pool: WarmPool[str, dict[str, Any]] = WarmPool(
            "transcription",
            self._open,
            kind="stt",
            spares=size,
            connect_timeout=engine.connect_timeout,
            retry=engine.retry,
            renew_margin=renew_margin,
            health=health,
        )
        self._pool.use(_KEY)

    @property
    def size(self) -> int:
        """Sessions kept ready."""
        return self._pool.spares

    @property
    def opened(self) -> int:
        """Warm sessions opened so far (for logs and tests)."""
        return self._pool.opened

    @property
    def ready(self) -> int:
        """Sessions ready to be taken now."""
        return self._pool.ready()

    @property
    def health(self) -> Health | None:
        """Told when sessions cannot be opened (an outage) and when they can again."""
        return self._pool.health

    @health.setter
    def health(self, health: Health | None) -> None:
        self._pool.health = health

    def start(self, after: Awaitable[Any] | None = None) -> None:
        """Start keeping sessions ready, once ``after`` is done (idempotent; needs a
        running event loop)."""
        self._pool.start(after)

    def remember(self, request: TranscribeRequest) -> None:
        """Open the next warm sessions with ``request``'s configuration (Home Assistant
        sends the same language every time, so the next request needs no update)."""
        self._request = request

    async def take(self) -> Warm[str, dict[str, Any]] | None:
        """A ready session (``session`` is the configuration it has), no longer watched
        (the caller owns and closes its ``connection``), or None."""
        return await self._pool.take(_KEY)

    async def aclose(self) -> None:
        """Stop opening sessions and close the ready ones."""
        await self._pool.aclose()

    async def _open(self, key: str) -> Opened[dict[str, Any]]:
        del key
        request = self._request
        connection, expires_at = await self._engine.open_session(request)
        return Opened(self._engine.session_config(request), connection, expires_at)
