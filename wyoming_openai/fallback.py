"""When the OpenAI side may be replaced by the local engines, and for how long.

Only outages fall back (``BridgeError.outage``, :data:`wyoming_openai.errors.OUTAGE_CODES`):
a request the service rejected for what it is is reported, not hidden behind another
engine.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .errors import BridgeError

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outage:
    """The last OpenAI failure that made the local engines answer.

    Attributes:
        cause: the failure (its message never holds the API key).
        at: when it happened, ``time.monotonic()`` seconds.
    """

    cause: BridgeError
    at: float

    def age(self) -> float:
        """Seconds since the failure."""
        return time.monotonic() - self.at


class LocalHold:
    """After an OpenAI failure, answer locally for ``hold_seconds`` before trying OpenAI again.

    Without it, every request during an outage would wait for OpenAI's deadline (the
    connect timeout, or the whole request timeout when the service hangs) before the
    local engine answers. One instance per engine (speech to text, text to speech).

    Args:
        what: the engine's job, for the log (``"transcription"``, ``"speech"``).
        hold_seconds: how long the local engine answers straight away (0: never).
    """

    def __init__(self, what: str, hold_seconds: float) -> None:
        self._what = what
        self._hold = hold_seconds
        self._outage: Outage | None = None
        self._marked = False  # the outage was recorded by mark_out (cleared by mark_up)

    def current(self) -> Outage | None:
        """The outage the local engine is still covering, or ``None``: try OpenAI."""
        outage = self._outage
        if outage is None:
            return None
        if outage.age() >= self._hold:
            self._outage = None
            _LOGGER.info(
                "Trying OpenAI %s again (%.0f s after it failed)", self._what, outage.age()
            )
            return None
        return outage

    @property
    def covering(self) -> bool:
        """Whether the local engine is answering in OpenAI's place now."""
        outage = self._outage
        return outage is not None and outage.age() < self._hold

    def remaining(self, outage: Outage) -> float:
        """Seconds until OpenAI is tried again after ``outage``."""
        return max(0.0, self._hold - outage.age())

    def trip(self, cause: BridgeError) -> None:
        """Record an OpenAI failure: the next ``hold_seconds`` are answered locally.

        Logs nothing: the engine logs each fallback once, with its cause.
        """
        if self._hold > 0:
            self._outage = Outage(cause, time.monotonic())
            self._marked = False

    # Told by the warm-session pool (``warm.Health``): what it learns before a request.

    def mark_out(self, cause: BridgeError) -> None:
        """OpenAI could not open a session ahead of requests (an outage): the next
        requests are answered locally at once, for ``hold_seconds`` from this mark (the
        pool marks again at each failed attempt, so the hold lasts the outage).

        Logged once per outage (the pool retries in the background)."""
        if self._hold <= 0:
            return
        if not self.covering:
            _LOGGER.warning(
                "OpenAI %s is out (%s): the local engine answers until it is back",
                self._what,
                cause,
            )
        self._outage = Outage(cause, time.monotonic())
        self._marked = True

    def mark_up(self) -> None:
        """OpenAI opened and configured a session again: if the outage was one
        :meth:`mark_out` recorded, the next request tries OpenAI. An outage a request
        tripped (:meth:`trip`) is held for its time: a service that connects may still
        fail requests (e.g. never answer after the commit)."""
        if not self._marked:
            return
        self._marked = False
        outage, self._outage = self._outage, None
        if outage is not None and outage.age() < self._hold:
            _LOGGER.info("OpenAI %s answers again: trying it for the next request", self._what)
