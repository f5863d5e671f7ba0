"""Realtime sessions opened and configured ahead of requests, for transcription and speech.

A realtime session (OpenAI API reference, Realtime: ``session.created`` carries
``expires_at``, Unix seconds; sessions last at most 60 minutes, then ``error``
``session_expired`` and a 1001 close) costs a WebSocket, TLS and a ``session.update``
round trip to open: several hundred milliseconds over the internet. :class:`WarmPool`
keeps configured sessions ready per *key* (a transcription configuration, a voice), so a
request starts on an open session:

- it opens ``spares`` sessions per key in use, renews each ``renew_margin`` seconds before
  it expires (at most a quarter of its lifetime), and replaces one the service ends (a
  watcher reads the waiting session's events: a close or an ``error`` the user deems fatal
  retires it);
- keys are kept least recently used first; beyond ``max_keys`` the oldest key's sessions
  are closed;
- sessions are either used up (``reusable=False``: a transcription session is taken for
  one utterance and replaced at once) or lent (``reusable=True``: a speech session comes
  back with :meth:`WarmPool.give_back` after its response and counts as the key's spare
  while out);
- when a session cannot be opened or configured, the pool tells its :class:`Health`
  (the failure, if it is an outage: :attr:`wyoming_openai.errors.BridgeError.outage`) and
  tries again with growing back-off; the next success tells it the service is up.

A waiting session is never asked for a response, so it produces nothing to bill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from . import metrics, upstream
from . import realtime_wire as wire
from .errors import BridgeError
from .retry import RetryPolicy

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

_LOGGER = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
S = TypeVar("S")

WARM_RENEW_MARGIN = 300.0
"""A warm session is replaced this many seconds before it expires (at most a quarter of
its lifetime), so no request (at most ``limits.max_utterance_seconds``) outlives it."""

WARM_RETRY_FACTOR = 4
"""While the service refuses sessions (a bad key, an outage), attempts to open one are
this many times further apart than the engine's retry delays (at most
``4 x RetryPolicy.max_delay``, plus jitter): requests still connect on their own."""


class Health(Protocol):
    """Told what the pool learns about the service (``fallback.LocalHold`` is one)."""

    def mark_out(self, cause: BridgeError) -> None:
        """The service failed to open a session with an outage."""

    def mark_up(self) -> None:
        """The service opened and configured a session."""


@dataclass(frozen=True)
class Opened(Generic[S]):
    """What an opener returns: the user's session object, its WebSocket, and when the
    service ends it (Unix time, seconds; ``realtime_wire.expires_at``)."""

    session: S
    connection: AsyncRealtimeConnection
    expires_at: float


@dataclass(eq=False)
class Warm(Generic[K, S]):
    """One pooled session.

    Attributes:
        key: what it is configured for.
        session: the user's object for it.
        connection: its WebSocket.
        renew_at: when it is replaced (Unix time, seconds).
    """

    key: K
    session: S
    connection: AsyncRealtimeConnection
    renew_at: float
    alive: bool = True
    watcher: asyncio.Task[None] | None = None


class WarmPool(Generic[K, S]):
    """Configured realtime sessions kept open per key (see the module docstring).

    Args:
        what: the sessions' job, for the log (``"transcription"``, ``"speech"``).
        kind: the sessions' kind in the metrics (``"stt"``, ``"tts"``).
        open_session: opens and configures one session for a key.
        spares: sessions kept ready per key in use (0: none are opened ahead).
        max_keys: keys kept warm, least recently used closed first.
        reusable: sessions come back after use (:meth:`give_back`) instead of being used up.
        connect_timeout: seconds for ``open_session``.
        retry: back-off between failed attempts (times :data:`WARM_RETRY_FACTOR`).
        renew_margin: seconds before expiry a session is replaced.
        max_idle: ready sessions kept per key (those given back beyond it are closed).
        ends_session: whether an event read from a waiting session retires it (default:
            any ``error``).
        health: told about failures to open and the next success (None: nobody).
    """

    def __init__(
        self,
        what: str,
        open_session: Callable[[K], Awaitable[Opened[S]]],
        *,
        kind: metrics.Kind,
        spares: int,
        max_keys: int = 1,
        reusable: bool = False,
        connect_timeout: float,
        retry: RetryPolicy | None = None,
        renew_margin: float = WARM_RENEW_MARGIN,
        max_idle: int | None = None,
        ends_session: Callable[[dict[str, Any]], bool] | None = None,
        health: Health | None = None,
    ) -> None:
        self._what = what
        self._kind: metrics.Kind = kind
        self._open_session = open_session
        self.spares = spares
        self.max_keys = max_keys
        self._reusable = reusable
        self._connect_timeout = connect_timeout
        self._retry = retry or RetryPolicy()
        self._renew_margin = renew_margin
        self._max_idle = max(spares, max_idle or 0, 1)
        self._ends_session = ends_session or (lambda event: event.get("type") == "error")
        self.health = health
        self._keys: OrderedDict[K, None] = OrderedDict()
        self._idle: dict[K, list[Warm[K, S]]] = {}
        self._lent: dict[K, int] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._opening: dict[K, asyncio.Task[None]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.closed = False
        """Set by :meth:`aclose`: no session is kept any more."""
        self.opened = 0
        """Sessions opened ahead of requests so far (for logs and tests)."""

    # ------------------------------------------------------------------ state

    @property
    def keys(self) -> list[K]:
        """Keys kept warm, least recently used first."""
        return list(self._keys)

    def ready(self, key: K | None = None) -> int:
        """Sessions ready to be taken now (for ``key``, or for every key)."""
        lists = self._idle.values() if key is None else [self._idle.get(key, [])]
        return sum(1 for idle in lists for warm in idle if warm.alive)

    @property
    def running(self) -> bool:
        """Whether sessions are being opened ahead of requests."""
        return self._task is not None

    # ------------------------------------------------------------------ requests

    def start(self, after: Awaitable[Any] | None = None) -> None:
        """Start keeping sessions ready, once ``after`` is done (idempotent; needs a
        running event loop)."""
        if self.spares > 0 and self._task is None and not self.closed:
            self._task = asyncio.create_task(self._maintain(after), name=f"warm-{self._what}")

    def use(self, key: K) -> None:
        """Keep ``key`` warm as the most recently used; beyond :attr:`max_keys` the least
        recently used key's ready sessions are closed."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return
        self._keys[key] = None
        while len(self._keys) > max(self.max_keys, 1):
            old, _ = self._keys.popitem(last=False)
            _LOGGER.debug("No longer keeping a %s session warm for %s", self._what, old)
            for warm in self._idle.pop(old, []):
                self._retire(warm)
        self._changed.set()

    async def take(self, key: K) -> Warm[K, S] | None:
        """A ready session of ``key``, no longer watched (the caller owns it; a reusable
        one is lent: :meth:`give_back` or :meth:`drop` it), or None. A session of ``key``
        the pool is opening right now is waited for (it is ready sooner than a new one).

        Raises:
            BridgeError: the session being opened for ``key`` failed (the caller's own
                attempt would have failed alike).
        """
        waited: asyncio.Task[None] | None = None
        while True:
            idle = self._idle.get(key, [])
            while idle:
                warm = idle.pop()
                if self._reusable:  # counted before any await: no spare is opened for it
                    self._lent[key] = self._lent.get(key, 0) + 1
                self._changed.set()  # open a replacement (used up) or renew
                if warm.watcher is not None:
                    warm.watcher.cancel()
                    try:
                        await asyncio.wait({warm.watcher})  # no recv() of ours left on it
                    except asyncio.CancelledError:  # the taker is gone: nobody would close it
                        self.drop(warm)
                        raise
                    warm.watcher = None
                if warm.alive and time.time() < warm.renew_at and not self.closed:
                    return warm
                self._return(warm)
                self._retire(warm)
            opening = self._opening.get(key)
            if opening is None or opening is waited or self.closed:
                return None
            waited = opening
            await asyncio.wait({opening})
            if not opening.cancelled() and (error := opening.exception()) is not None:
                raise error

    async def open_now(self, key: K) -> Warm[K, S]:
        """Open a session of ``key`` for the caller at once (counted as lent when the pool
        is reusable, so the pool does not open another meanwhile).

        Raises:
            BridgeError: the session could not be opened (classified by ``upstream``).
        """
        if self._reusable:
            self._lent[key] = self._lent.get(key, 0) + 1
        try:
            warm = await self._open(key)
        except BaseException:
            if self._reusable:
                self._lent[key] -= 1
            raise
        return warm

    def give_back(self, warm: Warm[K, S]) -> None:
        """A lent session is ready again (closed instead when its key is no longer warm,
        enough are ready, it is due for renewal, or the pool is closed)."""
        self._return(warm)
        idle = self._idle.setdefault(warm.key, [])
        if (
            self.closed
            or warm.key not in self._keys
            or not warm.alive
            or len(idle) >= self._max_idle
            or time.time() >= warm.renew_at
        ):
            self._retire(warm)
            return
        idle.append(warm)
        warm.watcher = asyncio.create_task(self._watch(warm), name=f"warm-{self._what}-watch")

    def drop(self, warm: Warm[K, S]) -> None:
        """A lent session is not coming back: close it (the pool replaces it)."""
        self._return(warm)
        self._retire(warm)

    async def aclose(self) -> None:
        """Stop opening sessions, close the ready ones and wait for every close."""
        self.closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ready = [warm for idle in self._idle.values() for warm in idle]
        self._idle.clear()
        for warm in ready:
            self._retire(warm)
        await asyncio.gather(*self._closing, return_exceptions=True)

    # ------------------------------------------------------------------ inside

    def _return(self, warm: Warm[K, S]) -> None:
        if self._reusable and self._lent.get(warm.key, 0) > 0:
            self._lent[warm.key] -= 1
        self._changed.set()

    def _retire(self, warm: Warm[K, S]) -> None:
        """Close ``warm`` in a task of its own, which cancelling the caller does not cut
        short (a half-closed WebSocket would stay open)."""
        warm.alive = False
        if warm.watcher is not None:
            warm.watcher.cancel()
        task = asyncio.create_task(self._close(warm), name=f"warm-{self._what}-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._changed.set()

    @staticmethod
    async def _close(warm: Warm[K, S]) -> None:
        if warm.watcher is not None:
            await asyncio.gather(warm.watcher, return_exceptions=True)
        await wire.close_quietly(warm.connection)

    def _wanted(self) -> K | None:
        """The most recently used key short of spares, or None."""
        for key in reversed(self._keys):
            if self.ready(key) + self._lent.get(key, 0) < self.spares:
                return key
        return None

    async def _maintain(self, after: Awaitable[Any] | None) -> None:
        if after is not None:
            with contextlib.suppress(Exception):
                await after
        failures = 0
        while True:
            now = time.time()
            for idle in list(self._idle.values()):
                for warm in [w for w in idle if not w.alive or w.renew_at <= now]:
                    idle.remove(warm)
                    if warm.alive:
                        _LOGGER.debug("Renewing a warm %s session before it expires", self._what)
                        metrics.renewed(self._kind)
                    self._retire(warm)
            wanted = self._wanted()
            if wanted is not None:
                opening = asyncio.create_task(
                    self._open_ahead(wanted), name=f"warm-{self._what}-open"
                )
                self._opening[wanted] = opening
                try:
                    await asyncio.wait({opening})
                except asyncio.CancelledError:
                    opening.cancel()
                    raise
                finally:
                    self._opening.pop(wanted, None)
                error = None if opening.cancelled() else opening.exception()
                if isinstance(error, BridgeError):
                    level = logging.WARNING if failures == 0 else logging.DEBUG
                    _LOGGER.log(level, "Opening a warm %s session: %s; retrying", self._what, error)
                    if error.outage and self.health is not None:
                        self.health.mark_out(error)
                    delay = self._retry.delay(min(failures, 16)) * WARM_RETRY_FACTOR
                    failures += 1
                    await asyncio.sleep(delay)
                    continue
                if error is not None:
                    raise error
                if failures:
                    _LOGGER.info("Warm %s sessions open again", self._what)
                failures = 0
                if self.health is not None:
                    self.health.mark_up()
                continue
            renewals = [w.renew_at for idle in self._idle.values() for w in idle]
            timeout = max(0.0, min(renewals) - time.time()) if renewals else None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a
                # cancellation that arrives as the event is set (python/cpython#86296)
                async with asyncio.timeout(timeout):
                    await self._changed.wait()

    async def _open_ahead(self, key: K) -> None:
        """Open a session of ``key`` and make it ready (closed if ``key`` was dropped
        meanwhile).

        Raises:
            BridgeError: the session could not be opened.
        """
        warm = await self._open(key)
        if key in self._keys and not self.closed:
            self.opened += 1
            self._idle.setdefault(key, []).append(warm)
            warm.watcher = asyncio.create_task(self._watch(warm), name=f"warm-{self._what}-watch")
        else:
            self._retire(warm)

    async def _open(self, key: K) -> Warm[K, S]:
        """Open and configure a session of ``key``.

        Raises:
            BridgeError: classified by :mod:`wyoming_openai.upstream`.
        """
        try:
            async with asyncio.timeout(self._connect_timeout):
                opened = await self._open_session(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise upstream.from_exception(exc, self._what) from exc
        lifetime = max(0.0, opened.expires_at - time.time())
        margin = min(self._renew_margin, lifetime / 4)
        _LOGGER.debug(
            "%s session ready for %s (renewed in %.0f s)", self._what, key, lifetime - margin
        )
        return Warm(key, opened.session, opened.connection, renew_at=opened.expires_at - margin)

    async def _watch(self, warm: Warm[K, S]) -> None:
        """Read the waiting session's events: a close or a fatal event retires it."""
        try:
            while True:
                event = await wire.recv_event(warm.connection)
                if self._ends_session(event):
                    _LOGGER.debug("Warm %s session ended: %s", self._what, event.get("error"))
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _LOGGER.debug("Warm %s session closed: %r", self._what, exc)
        warm.alive = False
        self._changed.set()
