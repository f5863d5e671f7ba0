"""Hedged requests: when OpenAI's answer is overdue, the next option starts in parallel.

A voice assistant's user waits for every second OpenAI takes. A hung connection or a
stalled session otherwise costs ``openai.timeout`` before anything else is tried. Here:

- :class:`LatencyTracker` learns how long healthy answers take on one path (a rolling p99,
  clamped between ``openai.hedge_floor`` and ``openai.hedge_ceiling``); an answer not
  there by then is *overdue*.
- When an answer is overdue, the caller starts the next option while the first goes on
  (a fresh realtime session replaying the utterance, a fresh ``/v1/audio/speech`` request,
  the local engine), takes whichever good answer comes first and cancels the other, so
  its upstream session or request is closed. :class:`HedgedStream` does this for audio
  streams; :mod:`wyoming_openai.stt.realtime.session` for transcription.
- ``openai.timeout`` stays the last resort; a healthy answer never starts a second
  (billed) request, because the floor is well above healthy latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from . import metrics
from .errors import BridgeError

if TYPE_CHECKING:
    from .config import OpenAISettings

_LOGGER = logging.getLogger(__name__)

WINDOW = 100
"""Healthy answers remembered per path; with fewer than 100 the p99 is the slowest."""

QUANTILE = 0.99


class LatencyTracker:
    """How long healthy answers on one path take, and when an answer is overdue.

    Args:
        path: what is timed, for the log (e.g. ``"transcription finalize"``).
        floor: shortest overdue time, seconds (a healthy service stays below it).
        ceiling: longest overdue time, seconds; also used before any answer was timed.
        enabled: false: never overdue (hedging off).
        window: answers remembered.
    """

    def __init__(
        self,
        path: str,
        floor: float,
        ceiling: float,
        *,
        enabled: bool = True,
        window: int = WINDOW,
    ) -> None:
        if ceiling < floor:
            raise ValueError("ceiling below floor")
        self.path = path
        self.floor = floor
        self.ceiling = ceiling
        self.enabled = enabled
        self._samples: deque[float] = deque(maxlen=window)
        self.hedges = 0
        """Times an answer on this path was overdue and the next option started."""

    @classmethod
    def from_settings(cls, path: str, settings: OpenAISettings) -> LatencyTracker:
        """A tracker with ``openai.hedge``, ``hedge_floor`` and ``hedge_ceiling``."""
        return cls(path, settings.hedge_floor, settings.hedge_ceiling, enabled=settings.hedge)

    @classmethod
    def off(cls, path: str) -> LatencyTracker:
        """A tracker that never reports an answer overdue (it still records)."""
        return cls(path, math.inf, math.inf, enabled=False)

    def record(self, seconds: float) -> None:
        """Remember one healthy answer that took ``seconds``."""
        self._samples.append(seconds)

    def p99(self) -> float | None:
        """The 99th percentile of the answers remembered (nearest rank), or None."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        return ordered[max(0, math.ceil(QUANTILE * len(ordered)) - 1)]

    def overdue_after(self) -> float | None:
        """Seconds after which an answer is overdue: the p99 clamped to
        ``[floor, ceiling]`` (the ceiling before any answer was timed); None when off."""
        if not self.enabled:
            return None
        p99 = self.p99()
        if p99 is None:
            return self.ceiling
        return min(self.ceiling, max(self.floor, p99))

    def hedged(self, what: str, after: float) -> None:
        """Count and log one hedge: ``what`` was started ``after`` seconds in."""
        self.hedges += 1
        metrics.hedged(self.path)
        _LOGGER.warning(
            "OpenAI %s overdue (no answer after %.2f s): %s in parallel", self.path, after, what
        )


@runtime_checkable
class Hedgeable(Protocol):
    """A speech-to-text session that says when its answer is overdue."""

    @property
    def overdue(self) -> asyncio.Event:
        """Set once the session's answer is overdue (it started a hedge of its own)."""
        ...


Side = Literal["primary", "backup"]


async def _first(stream: AsyncIterator[bytes]) -> bytes | None:
    """The stream's first chunk, or None when it ends without one."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


async def _close(stream: AsyncIterator[bytes]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class HedgedStream:
    """An audio stream, raced against a backup started once its first chunk is overdue.

    Iterate :meth:`chunks`: the primary's chunks if its first one comes within ``after``
    seconds; otherwise the backup (``start_backup()``) starts and whichever stream gives a
    first chunk first is played to its end, the other closed at once. A stream failing
    before its first chunk leaves the race to the other; when the primary fails before
    the backup was started, its error is raised at once (a failure is no delay: the
    caller decides what follows it).

    Args:
        primary: the stream asked for.
        start_backup: starts the backup stream.
        after: seconds before the primary is overdue (None: never hedge).
        fatal: failures that end the race at once, even with the other stream running.
        on_hedge: called when the backup starts.

    Raises:
        BridgeError: both streams failed (the primary's error), or a ``fatal`` one.
    """

    def __init__(
        self,
        primary: AsyncIterator[bytes],
        start_backup: Callable[[], AsyncIterator[bytes]],
        after: float | None,
        *,
        fatal: Callable[[BridgeError], bool] = lambda err: False,
        on_hedge: Callable[[], None] | None = None,
    ) -> None:
        self._primary = primary
        self._start_backup = start_backup
        self._after = after
        self._fatal = fatal
        self._on_hedge = on_hedge
        self.hedged = False
        """Whether the backup was started."""
        self.winner: Side | None = None
        """Whose audio is played (once a first chunk came)."""
        self.first_after: float | None = None
        """Seconds from the start to the winner's first chunk."""
        self.errors: dict[Side, BridgeError] = {}
        """Failures before a first chunk, per side."""

    async def chunks(self) -> AsyncIterator[bytes]:
        """The winner's chunks (see the class docstring)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        streams: dict[Side, AsyncIterator[bytes]] = {"primary": self._primary}
        pending: dict[asyncio.Task[bytes | None], Side] = {
            asyncio.create_task(_first(self._primary), name="hedge-primary"): "primary"
        }
        timer: asyncio.Task[None] | None = None
        if self._after is not None:
            timer = asyncio.create_task(asyncio.sleep(self._after), name="hedge-timer")
        first: bytes | None = None
        try:
            while self.winner is None:
                if not pending:
                    raise self.errors.get("primary") or self.errors["backup"]
                waiting: set[asyncio.Task[bytes | None] | asyncio.Task[None]] = set(pending)
                if timer is not None:
                    waiting.add(timer)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in pending if t in done]:
                    side = pending.pop(task)
                    error = task.exception()
                    if error is None:
                        self.winner, first = side, task.result()
                        break
                    if not isinstance(error, BridgeError) or self._fatal(error):
                        raise error
                    self.errors[side] = error
                    if side == "primary" and timer is not None:
                        raise error  # failed before it was overdue: no hedge
                if self.winner is None and timer is not None and timer in done:
                    timer = None
                    self.hedged = True
                    if self._on_hedge is not None:
                        self._on_hedge()
                    backup = streams["backup"] = self._start_backup()
                    pending[asyncio.create_task(_first(backup), name="hedge-backup")] = "backup"
            self.first_after = loop.time() - started
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            pending.clear()
            for side, stream in streams.items():
                if side != self.winner:
                    await _close(stream)
            if first is None:
                return
            yield first
            assert self.winner is not None
            async for chunk in streams[self.winner]:
                yield chunk
        finally:
            if timer is not None:
                timer.cancel()
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for stream in streams.values():
                await _close(stream)
