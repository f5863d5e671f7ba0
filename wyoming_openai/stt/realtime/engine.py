"""Speech to text through an OpenAI GA realtime transcription session: the engine.

Wire (OpenAI API reference, Realtime transcription and the ``openai.types.realtime``
events of openai-python 3.52):

- connect ``{base_url}/realtime?intent=transcription`` (no ``model`` query parameter);
  the service sends ``session.created`` (with ``expires_at``, Unix seconds);
- ``session.update`` with ``session.type = "transcription"``, input format
  ``audio/pcm`` at 24 kHz (``AudioPCM.rate: Literal[24000]``), ``turn_detection: null``
  (the client says when speech ends), then ``session.updated`` (or ``error``, e.g.
  ``model_not_found``);
- ``input_audio_buffer.append {audio: base64 PCM s16le 24 kHz mono}`` (no ack);
- ``input_audio_buffer.commit`` -> ``input_audio_buffer.committed {item_id}`` ->
  ``conversation.item.input_audio_transcription.delta {item_id, delta}``* ->
  ``...completed {item_id, transcript}`` or ``...failed {item_id, error}``; every commit
  makes a new item, transcribed in order;
- ``error`` events may come at any time and the socket stays open after them; a session
  lasts at most 60 minutes, then ``error.code = session_expired`` and a 1001 close.

The engine opens and configures sessions; :mod:`.pool` keeps some open ahead of requests
and :mod:`.session` streams one utterance, replaying it into a new session when one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
from typing import TYPE_CHECKING, Any

from ... import metrics
from ... import realtime_wire as wire
from ...audio import PCM_24K_MONO
from ...catalogue import DEFAULT_MODELS
from ...config import SttSettings
from ...errors import BridgeError, ErrorCode
from ...hedge import LatencyTracker
from ...retry import RetryPolicy
from ...warm import Health
from ..base import TranscribeRequest
from ..openai_base import OpenAISttEngine
from .pool import WARM_RENEW_MARGIN, WarmSessions
from .session import WHAT, RealtimeSttSession

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

_LOGGER = logging.getLogger(__name__)

SUCCESSOR_MODEL = DEFAULT_MODELS["realtime"]
"""Where a configured model the service reports as retired or unknown moves to."""


class RealtimeSttEngine(OpenAISttEngine):
    """OpenAI realtime transcription: audio is streamed while the person speaks.

    Args:
        client: the process's SDK client (its ``base_url`` gives the WebSocket URL).
        settings: the ``stt`` settings (model, language, prompt, noise reduction,
            speculative commit, warm sessions).
        connect_timeout: seconds to open and configure one session.
        result_timeout: seconds from ``audio-stop`` to the transcript, retries included.
        retry: back-off between attempts.
        warm_renew_margin: seconds before expiry a warm session is replaced.
        health: told when warm sessions cannot be opened (an outage) and when they can
            again (``fallback.LocalHold``).
        finalize: times finalizes and says when one is overdue (default: never).
    """

    input_format = PCM_24K_MONO
    description_format = "OpenAI {model} (realtime)"

    def __init__(
        self,
        client: AsyncOpenAI,
        settings: SttSettings,
        connect_timeout: float,
        result_timeout: float,
        retry: RetryPolicy | None = None,
        warm_renew_margin: float = WARM_RENEW_MARGIN,
        health: Health | None = None,
        finalize: LatencyTracker | None = None,
    ) -> None:
        super().__init__(client, settings, retry)
        self.connect_timeout = connect_timeout
        self.result_timeout = result_timeout
        self.speculative_commit = settings.speculative_commit
        """Whether sessions commit at the end of speech a local detector hears."""
        self.finalize = finalize or LatencyTracker.off("transcription finalize")
        """Time from a commit to its transcript; when overdue, sessions hedge."""
        self.warm = WarmSessions(self, settings.warm_sessions, warm_renew_margin, health)
        self._closing: set[asyncio.Task[None]] = set()
        self._preload: asyncio.Task[Any] | None = None

    def session_config(
        self, request: TranscribeRequest, model: str | None = None
    ) -> dict[str, Any]:
        """The ``session`` object of ``session.update`` for ``request``."""
        settings = self._settings
        transcription = self.transcription(request, model)
        noise = None if settings.noise_reduction == "none" else {"type": settings.noise_reduction}
        return {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": PCM_24K_MONO.rate},
                    "transcription": transcription,
                    "turn_detection": None,
                    "noise_reduction": noise,
                }
            },
        }

    def open(self, request: TranscribeRequest) -> RealtimeSttSession:
        return RealtimeSttSession(self, request)

    def close_later(self, connection: AsyncRealtimeConnection) -> asyncio.Task[None]:
        """Close ``connection`` in a task of its own, which cancelling the caller does not
        cut short (a half-closed WebSocket would stay open); :meth:`aclose` waits for it."""
        task = asyncio.create_task(wire.close_quietly(connection), name="realtime-stt-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def prepare(self) -> None:
        """Load the SDK's realtime module in a worker thread and start opening the warm
        sessions, both in the background: start-up does not wait, and the event loop is
        not blocked by the import when the first session opens (``benchmarks/README.md``,
        Realtime SDK import)."""
        if self._preload is None:
            self._preload = asyncio.create_task(
                asyncio.to_thread(importlib.import_module, "openai.resources.realtime")
            )
        self.warm.start(self._preload)

    async def aclose(self) -> None:
        """Close the warm sessions, and wait for sessions still closing."""
        await self.warm.aclose()
        await asyncio.gather(*self._closing, return_exceptions=True)
        if self._preload is not None:
            await asyncio.gather(self._preload, return_exceptions=True)

    async def connect(self, request: TranscribeRequest) -> AsyncRealtimeConnection:
        """A configured session for ``request``: a warm one if there is one (reconfigured
        with ``session.update`` if ``request`` needs another configuration), else a new
        one (:meth:`open_session`).

        Raises:
            BridgeError: the session could not be configured.
            Exception: SDK/WebSocket/network errors (``upstream.from_exception``).
        """
        self.warm.remember(request)
        warm = await self.warm.take()
        if warm is not None:
            try:
                await self._configure(warm.connection, request, warm.session)
                return warm.connection
            except BaseException:
                metrics.session_closed(warm.connection)
                with contextlib.suppress(Exception):
                    await warm.connection.close()
                raise
        connection, _expires_at = await self.open_session(request)
        return connection

    async def open_session(
        self, request: TranscribeRequest
    ) -> tuple[AsyncRealtimeConnection, float]:
        """Open a configured session: connect, ``session.created``, ``session.update``,
        ``session.updated``.

        Returns:
            the connection and when the session expires (Unix time, seconds).

        Raises:
            BridgeError: the session could not be configured.
            Exception: SDK/WebSocket/network errors (``upstream.from_exception``).
        """
        connection = await self._client.realtime.connect(
            extra_query={"intent": "transcription"}
        ).enter()
        metrics.session_opened("stt", connection)
        try:
            created = await wire.expect(connection, "session.created", WHAT)
            await self._configure(connection, request, None)
            return connection, wire.expires_at(created)
        except BaseException:
            metrics.session_closed(connection)
            with contextlib.suppress(Exception):
                await connection.close()
            raise

    async def _configure(
        self,
        connection: AsyncRealtimeConnection,
        request: TranscribeRequest,
        current: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Send ``session.update`` for ``request`` unless ``current`` (the configuration the
        session has) already is it; a model the service does not know moves to
        :data:`SUCCESSOR_MODEL` (logged once per process). Returns the configuration."""
        while True:
            model = self._model
            config = self.session_config(request, model)
            if config == current:
                return config
            await connection.send_raw(json.dumps({"type": "session.update", "session": config}))
            try:
                await wire.expect(connection, "session.updated", WHAT)
                return config
            except BridgeError as err:
                if err.code != ErrorCode.MODEL_NOT_FOUND or model == SUCCESSOR_MODEL:
                    raise
                if self._model == model:
                    _LOGGER.warning(
                        "Transcription model %s is retired or unknown to the service; "
                        "using %s from now on",
                        model,
                        SUCCESSOR_MODEL,
                    )
                    self._model = SUCCESSOR_MODEL
                    metrics.model_moved("stt", model, SUCCESSOR_MODEL)
