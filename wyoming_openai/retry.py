"""How long to wait before another try at a transient upstream failure.

The SDK's own retries would also retry ``429 insufficient_quota``, which never succeeds
(OpenAI API reference, Error codes: "You exceeded your current quota"), and its back-off
(0.5-8 s, openai-python 3.57 ``_constants.py``) is too slow for a voice assistant. Callers
retry with :class:`RetryPolicy` inside their own deadline; which failures are worth it is
``BridgeError.retryable``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from . import metrics
from .errors import BridgeError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential back-off with jitter.

    Attributes:
        max_retries: attempts after the first.
        base_delay: seconds before the first retry; doubled each time.
        max_delay: cap on one delay, seconds.
        kind: what is retried (``stt``, ``tts``), for the retries metric.
    """

    max_retries: int = 2
    base_delay: float = 0.2
    max_delay: float = 2.0
    kind: metrics.Kind = "stt"

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), with ±20 % jitter."""
        base = min(self.base_delay * (2**retry), self.max_delay)
        return base * random.uniform(0.8, 1.2)

    async def run(
        self,
        attempt: Callable[[], Awaitable[T]],
        on_retry: Callable[[BridgeError], None] | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or retries run out.

        ``attempt`` must raise :class:`BridgeError` on failure. The caller bounds the
        total time (``asyncio.timeout``).

        Raises:
            BridgeError: the last failure.
        """
        retry = 0
        while True:
            try:
                return await attempt()
            except BridgeError as err:
                if not err.retryable or retry >= self.max_retries:
                    raise
                if on_retry is not None:
                    on_retry(err)
                metrics.retried(self.kind)
                await asyncio.sleep(self.delay(retry))
                retry += 1
