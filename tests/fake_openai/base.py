"""The state and helpers shared by the endpoint mixins of :class:`~tests.fake_openai.FakeOpenAI`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .common import Synthesizer, Transcriber
from .records import RealtimeSessionRecord, SpeechStreamRecord
from .validation import _ApiError

if TYPE_CHECKING:
    from .realtime import _RealtimeConnection


class _FakeOpenAIBase:
    """Declares the attributes every endpoint mixin may use, and the error helpers they share.

    :class:`~tests.fake_openai.FakeOpenAI` sets all of these in its ``__init__``, where the options
    and records are documented.
    """

    # Options
    api_key: str
    transcriber: Transcriber | None
    synthesizer: Synthesizer | None
    finalize_delay: float
    tts_first_byte_delay: float
    tts_chunk_bytes: int
    tts_chunk_interval: float
    reject_connections: bool
    drop_after_appends: int | None
    hang: bool
    http_errors: list[tuple[int, str | None]]
    http_error_retry_after: float | None
    echo_key_in_errors: bool
    speech_fail_after_bytes: int | None
    speech_hold: asyncio.Event | None
    speech_pause: asyncio.Event | None
    realtime_hold: asyncio.Event | None
    drop_after_commit_appends: int | None
    session_expires_in: float | None
    session_max_duration: float
    strict_sample_alignment: bool
    retired_models: set[str]
    realtime_errors: list[str]
    realtime_says: Callable[[str], str] | None
    realtime_delta_bytes: int
    # Hedging faults (tests/test_hedge.py)
    hang_handshake: bool
    stall_after_commit: int
    speech_stalls: int
    hung_handshakes: int

    # Records
    rejected_requests: int
    realtime_sessions: list[RealtimeSessionRecord]
    speech_requests: list[dict[str, Any]]
    speech_streams: list[SpeechStreamRecord]
    transcription_requests: list[dict[str, Any]]
    validation_failures: list[str]

    # Server state
    _stopping: asyncio.Event
    _tasks: set[asyncio.Task[Any]]
    _connections: set[_RealtimeConnection]
    _sessions_changed: asyncio.Condition

    async def _until_client_gone(self, request: web.Request) -> None:
        """Wait until the client closes the connection of ``request`` (or the fake stops)."""
        while not self._stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(0.01)

    @staticmethod
    def _error_response(
        status: int, err: _ApiError, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response({"error": err.body()}, status=status, headers=headers)

    @staticmethod
    def _retired_error(model: str, param: str = "model") -> _ApiError:
        """The answer to a request naming a model in :attr:`retired_models` (the service's
        wording for shut-down models)."""
        return _ApiError(
            "model_not_found",
            f"The model `{model}` has been deprecated, learn more here: "
            "https://platform.openai.com/docs/deprecations",
            param,
        )
