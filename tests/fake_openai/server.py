"""The :class:`FakeOpenAI` server: options, records, lifecycle and the HTTP plumbing
(authentication, error responses, injected errors, routing). Each endpoint's behaviour comes from
a mixin: :mod:`.http_transcription`, :mod:`.http_speech`, :mod:`.realtime_transcription`,
:mod:`.realtime_speech`, over the WebSocket handling of :mod:`.realtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from .common import (
    _MAX_UPLOAD_BYTES,
    _WS_CLOSE_TIMEOUT,
    DEFAULT_API_KEY,
    Synthesizer,
    Transcriber,
    _new_id,
)
from .http_speech import _HttpSpeech
from .http_transcription import _HttpTranscription
from .realtime import _RealtimeConnection, _RealtimeConnections
from .realtime_speech import _RealtimeSpeech
from .realtime_transcription import _RealtimeTranscription
from .records import RealtimeSessionRecord, SpeechStreamRecord
from .validation import _ApiError


class FakeOpenAI(
    _HttpTranscription, _HttpSpeech, _RealtimeTranscription, _RealtimeSpeech, _RealtimeConnections
):
    """A fake OpenAI API server for tests (see :mod:`tests.fake_openai`).

    Use as ``async with FakeOpenAI(...) as fake:`` or call :meth:`start` / :meth:`stop`.
    Every constructor option is also a plain attribute that may be changed while running.

    Options:
        api_key: the only accepted ``Authorization: Bearer`` key; others get HTTP 401
            ``invalid_api_key`` (the WebSocket handshake is refused before upgrading).
        transcriber: ``transcriber(pcm_24k, language, prompt) -> str`` (run in a thread);
            default :func:`default_transcriber`.
        synthesizer: ``synthesizer(text, voice) -> pcm_24k`` (run in a thread); default
            :func:`default_synthesizer`.
        finalize_delay: seconds between ``input_audio_buffer.committed`` and the first
            transcription delta of that item.
        tts_first_byte_delay: minimum seconds from a speech request to its first body byte
            (synthesis time counts towards it; headers go out with the first chunk).
        tts_chunk_bytes: size in bytes of each speech body chunk (odd by default, so chunks
            split 16-bit samples).
        tts_chunk_interval: seconds between speech body chunks.
        reject_connections: answer every request (HTTP and WebSocket handshake) with 503.
        drop_after_appends: drop the WebSocket abruptly (no close frame) right after this many
            ``input_audio_buffer.append`` events on a connection.
        hang: accept requests/WebSockets but never answer (client events are still recorded).
        http_errors: queue of ``(status, code)`` answered, one per request, by the next
            ``/v1/audio/*`` requests (after authentication), e.g. ``(429, "rate_limit_exceeded")``.
        http_error_retry_after: if set, injected errors carry ``retry-after-ms`` (seconds here).
        session_max_duration: seconds after which a Realtime session gets ``session_expired``
            and a 1001 close (the service's limit is 60 minutes).
        strict_sample_alignment: record a validation failure for ``audio/pcm`` appends that are
            not a whole number of 16-bit samples (the service itself does not complain).
        retired_models: models the service has shut down: ``/v1/audio/speech``,
            ``/v1/audio/transcriptions`` and realtime sessions naming one are answered with
            ``model_not_found`` (HTTP 404 "The model ... has been deprecated").
        realtime_errors: queue of error codes answered, one per ``response.create``, by the
            next conversation responses: an ``error`` event instead of a response (e.g.
            ``"server_error"``, ``"rate_limit_exceeded"``).
        realtime_says: ``realtime_says(text) -> spoken`` makes the conversation model say
            something else than the text it was given (audio and transcript alike).
        realtime_delta_bytes: PCM bytes per ``response.output_audio.delta`` (whole samples);
            speech responses also honour ``tts_first_byte_delay`` and ``tts_chunk_interval``.

    Hedging faults (plain attributes, set while running; turning one off is the recovery):
        hang_handshake: Realtime WebSocket handshakes are read but never answered (TCP
            accepted, no HTTP 101): the connect itself hangs. Counted in
            :attr:`hung_handshakes`; no session record is made.
        stall_after_commit: the next this-many ``input_audio_buffer.commit`` events (on any
            transcription session, warm ones too) are never answered, nor anything after
            them on that session (events still recorded; ``RealtimeSessionRecord.stalled``).
        speech_stalls: the next this-many ``/v1/audio/speech`` requests never send a byte
            (``SpeechStreamRecord.stalled``; ``aborted`` once the client closed it).

    Records (appended in order): :attr:`realtime_sessions`, :attr:`speech_requests`,
    :attr:`speech_streams`, :attr:`transcription_requests`, :attr:`validation_failures`.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        transcriber: Transcriber | None = None,
        synthesizer: Synthesizer | None = None,
        finalize_delay: float = 0.0,
        tts_first_byte_delay: float = 0.0,
        tts_chunk_bytes: int = 4801,
        tts_chunk_interval: float = 0.0,
        reject_connections: bool = False,
        drop_after_appends: int | None = None,
        hang: bool = False,
        http_errors: list[tuple[int, str | None]] | None = None,
        http_error_retry_after: float | None = None,
        session_max_duration: float = 3600.0,
        strict_sample_alignment: bool = True,
        retired_models: typing.Iterable[str] = (),
        realtime_errors: list[str] | None = None,
        realtime_says: Callable[[str], str] | None = None,
        realtime_delta_bytes: int = 4800,
    ) -> None:
        self.api_key = api_key
        self.transcriber: Transcriber | None = transcriber
        self.synthesizer: Synthesizer | None = synthesizer
        self.finalize_delay = finalize_delay
        self.tts_first_byte_delay = tts_first_byte_delay
        self.tts_chunk_bytes = tts_chunk_bytes
        self.tts_chunk_interval = tts_chunk_interval
        self.reject_connections = reject_connections
        self.rejected_requests = 0
        """Requests (and WebSocket handshakes) answered 503 by ``reject_connections``."""
        self.drop_after_appends = drop_after_appends
        self.hang = hang
        self.http_errors: list[tuple[int, str | None]] = list(http_errors or [])
        self.http_error_retry_after = http_error_retry_after
        self.echo_key_in_errors = False
        """Injected HTTP errors quote the API key in their message (a careless server)."""
        self.speech_fail_after_bytes: int | None = None
        """Cut every ``/v1/audio/speech`` body off (connection aborted) after this many bytes."""
        self.speech_hold: asyncio.Event | None = None
        """When set to an event, every ``/v1/audio/speech`` body waits for it before its first
        byte (the request is recorded at once)."""
        self.speech_pause: asyncio.Event | None = None
        """When set to an event, every ``/v1/audio/speech`` body waits for it after its first
        chunk (written, with ``first_byte_at`` set), so the body is incomplete until then."""
        self.realtime_hold: asyncio.Event | None = None
        """When set to an event, every conversation response waits for it after its first
        ``response.output_audio.delta``; a ``response.cancel`` meanwhile is recorded at once
        and stops the response when it goes on."""
        self.drop_after_commit_appends: int | None = None
        """Drop the WebSocket abruptly (no close frame) on the this-many-th
        ``input_audio_buffer.append`` after the connection's first commit."""
        self.session_expires_in: float | None = None
        """When set, ``session.created`` reports an ``expires_at`` this many seconds ahead
        (whole Unix seconds, as the service sends it); the session itself still lasts
        ``session_max_duration``."""
        self.session_max_duration = session_max_duration
        self.strict_sample_alignment = strict_sample_alignment
        self.retired_models: set[str] = set(retired_models)
        self.realtime_errors: list[str] = list(realtime_errors or [])
        self.realtime_says: Callable[[str], str] | None = realtime_says
        self.realtime_delta_bytes = realtime_delta_bytes
        self.hang_handshake = False
        self.stall_after_commit = 0
        self.speech_stalls = 0
        self.hung_handshakes = 0
        """Realtime handshakes left unanswered by ``hang_handshake``."""

        self.realtime_sessions: list[RealtimeSessionRecord] = []
        """One record per accepted Realtime WebSocket, in connection order."""
        self.speech_requests: list[dict[str, Any]] = []
        """JSON bodies of ``/v1/audio/speech`` requests (every parsed body, valid or not)."""
        self.speech_streams: list[SpeechStreamRecord] = []
        """One record per valid ``/v1/audio/speech`` request, appended when it arrives and
        updated as its body is sent (``first_byte_at``, ``completed``...)."""
        self.transcription_requests: list[dict[str, Any]] = []
        """``/v1/audio/transcriptions`` requests: the form fields (str, or list for repeated
        ``name[]`` fields) plus ``audio`` (PCM frames of the WAV as uploaded), ``rate`` (Hz),
        ``channels``, ``sample_width`` (bytes), ``filename``, ``content_type``."""
        self.validation_failures: list[str] = []
        """Client events/requests failing the SDK types, and server events the fake got wrong."""

        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connections: set[_RealtimeConnection] = set()
        self._sessions_changed = asyncio.Condition()

    # ---------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``; the SDK derives ``ws://.../v1/realtime`` from it."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def realtime_url(self) -> str:
        """``ws://127.0.0.1:<port>/v1/realtime`` (no query)."""
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    async def start(self) -> None:
        """Start listening on 127.0.0.1 on a free port."""
        if self._runner is not None:
            return
        self._stopping = asyncio.Event()
        app = web.Application(
            middlewares=[self._middleware], client_max_size=2 * _MAX_UPLOAD_BYTES + 1024 * 1024
        )
        app.router.add_get("/v1/realtime", self._handle_realtime)
        app.router.add_post("/v1/audio/speech", self._handle_speech)
        app.router.add_post("/v1/audio/transcriptions", self._handle_transcriptions)
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        app.on_response_prepare.append(self._add_request_id)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close open WebSockets (1001), cancel every task the fake started, stop the server."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        for conn in list(self._connections):
            self._cancel_connection_tasks(conn)
            if not conn.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        conn.ws.close(code=1001, message=b"server shutting down"),
                        _WS_CLOSE_TIMEOUT,
                    )
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current and not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_WS_CLOSE_TIMEOUT)
        await runner.cleanup()

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def open_realtime_sessions(self) -> int:
        """Realtime WebSockets accepted and not yet closed (leak checks count them)."""
        return sum(1 for record in self.realtime_sessions if record.closed_at is None)

    async def expire_realtime_sessions(self) -> None:
        """End every open Realtime session now, as the service does at its time limit:
        ``error.code = session_expired``, then a 1001 close."""
        for conn in list(self._connections):
            await self._expire_session(conn, 0)

    async def wait_for_realtime_session(self, count: int = 1) -> RealtimeSessionRecord:
        """Wait until at least ``count`` Realtime connections were accepted; return the
        ``count``-th record. Wrap it in ``asyncio.timeout(...)``."""
        async with self._sessions_changed:
            await self._sessions_changed.wait_for(lambda: len(self.realtime_sessions) >= count)
        return self.realtime_sessions[count - 1]

    # ---------------------------------------------------------------- HTTP plumbing

    @staticmethod
    async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
        if response.status != 101:
            response.headers.setdefault("x-request-id", _new_id("req_", 32))

    def _injected_error(self, status: int, code: str | None) -> web.Response:
        if status == 429:
            kind = "insufficient_quota" if code == "insufficient_quota" else "requests"
            message = (
                "You exceeded your current quota, please check your plan and billing details."
                if code == "insufficient_quota"
                else "Rate limit reached for requests. Please try again in 20ms."
            )
        elif status >= 500:
            kind = "server_error"
            message = "The server had an error while processing your request. Sorry about that!"
        else:
            kind = "invalid_request_error"
            message = f"Injected error {status}."
        if self.echo_key_in_errors:  # a careless OpenAI-compatible server
            message += f" (request made with key {self.api_key})"
        headers: dict[str, str] = {}
        if self.http_error_retry_after is not None:
            headers["retry-after-ms"] = str(int(self.http_error_retry_after * 1000))
        return self._error_response(status, _ApiError(code, message, None, kind), headers)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            is_realtime = request.path == "/v1/realtime"
            if self.hang and not is_realtime:
                await self._stopping.wait()
                return self._error_response(
                    503, _ApiError(None, "Server shutting down.", None, "server_error")
                )
            if self.reject_connections:
                self.rejected_requests += 1
                return self._error_response(
                    503,
                    _ApiError(
                        "service_unavailable",
                        "The server is overloaded or not ready yet.",
                        None,
                        "server_error",
                    ),
                )
            auth = request.headers.get("Authorization", "")
            if auth != f"Bearer {self.api_key}":
                if not auth.startswith("Bearer ") or not auth[7:]:
                    message = (
                        "You didn't provide an API key. You need to provide your API key in an "
                        "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                        "YOUR_KEY)."
                    )
                else:
                    key = auth[7:]
                    masked = key[:3] + "*" * max(0, len(key) - 7) + key[-4:]
                    message = (
                        f"Incorrect API key provided: {masked}. You can find your API key at "
                        "https://platform.openai.com/account/api-keys."
                    )
                return self._error_response(401, _ApiError("invalid_api_key", message))
            if request.path.startswith("/v1/audio/") and self.http_errors:
                status, code = self.http_errors.pop(0)
                return self._injected_error(status, code)
            return await handler(request)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _handle_not_found(self, request: web.Request) -> web.Response:
        return self._error_response(
            404, _ApiError(None, f"Invalid URL ({request.method} {request.path})")
        )
