"""Realtime WebSocket connections (``GET /v1/realtime``), shared by both kinds of session.

The handshake and its record, refusing the beta shape, then a transcription session
(``?intent=transcription``, :mod:`.realtime_transcription`) or a conversation session
(``?model=...``, :mod:`.realtime_speech`); the client event loop (each event validated against
the SDK types), sending server events (validated too), errors, closing, expiry and dropped
sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .base import _FakeOpenAIBase
from .common import _G711_BYTES_PER_MS, _PCM_BYTES_PER_MS, _WS_CLOSE_TIMEOUT, _new_id
from .records import RealtimeSessionRecord
from .validation import _ApiError, validate_client_event, validate_server_event

BETA_SHAPE_MESSAGE = "The beta Realtime API shape is no longer supported. Use the GA shape."


@dataclass
class _TranscriptionJob:
    """A committed item of a transcription session, queued for its transcription worker."""

    item_id: str
    pcm: bytes
    model: str | None
    language: str | None
    prompt: str | None


@dataclass(eq=False)
class _RealtimeConnection:
    """The state of one Realtime WebSocket (either kind of session)."""

    ws: web.WebSocketResponse
    request: web.Request
    record: RealtimeSessionRecord
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    buffer: bytearray = field(default_factory=bytearray)
    config: dict[str, Any] = field(default_factory=dict)
    queue: asyncio.Queue[_TranscriptionJob] = field(default_factory=asyncio.Queue)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    last_item_id: str | None = None
    handler_task: asyncio.Task[Any] | None = None
    closing_task: asyncio.Task[Any] | None = None
    dropped: bool = False
    gone: bool = False
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    response_id: str | None = None
    response_cancel: asyncio.Event = field(default_factory=asyncio.Event)
    voice_locked: bool = False
    appends_after_commit: int = 0

    @property
    def format_type(self) -> str:
        fmt = self.config.get("audio", {}).get("input", {}).get("format") or {}
        return str(fmt.get("type") or "audio/pcm")

    @property
    def bytes_per_ms(self) -> int:
        return _PCM_BYTES_PER_MS if self.format_type == "audio/pcm" else _G711_BYTES_PER_MS


class _RealtimeConnections(_FakeOpenAIBase):
    """The WebSocket side of ``GET /v1/realtime`` (see the module docstring)."""

    if TYPE_CHECKING:  # provided by _RealtimeTranscription and _RealtimeSpeech

        async def _run_transcription(self, conn: _RealtimeConnection) -> None: ...

        async def _on_transcription_event(
            self, conn: _RealtimeConnection, data: dict[str, Any], event_id: str | None
        ) -> None: ...

        async def _handle_conversation_session(self, conn: _RealtimeConnection) -> None: ...

        async def _on_conversation_event(
            self, conn: _RealtimeConnection, data: dict[str, Any], event_id: str | None
        ) -> None: ...

    def _expires_at(self) -> int:
        """``expires_at`` of a new session (Unix seconds; see :attr:`session_expires_in`)."""
        lifetime = self.session_expires_in
        return int(time.time() + (self.session_max_duration if lifetime is None else lifetime))

    def _spawn(self, coro: Awaitable[Any], conn: _RealtimeConnection | None = None) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if conn is not None:
            conn.tasks.add(task)
            task.add_done_callback(conn.tasks.discard)

    @staticmethod
    def _cancel_connection_tasks(conn: _RealtimeConnection) -> None:
        current = asyncio.current_task()
        for task in list(conn.tasks):
            if task is not current and task is not conn.closing_task:
                task.cancel()

    async def _handle_realtime(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            timeout=_WS_CLOSE_TIMEOUT, max_msg_size=32 * 1024 * 1024, autoping=True
        )
        if not ws.can_prepare(request).ok:
            return self._error_response(
                400, _ApiError(None, "Expected a WebSocket upgrade request.")
            )
        if self.hang_handshake:
            self.hung_handshakes += 1
            await self._until_client_gone(request)
            return web.Response(status=503)
        await ws.prepare(request)
        record = RealtimeSessionRecord(
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            connected_at=time.monotonic(),
        )
        self.realtime_sessions.append(record)
        async with self._sessions_changed:
            self._sessions_changed.notify_all()
        conn = _RealtimeConnection(ws=ws, request=request, record=record)
        conn.handler_task = asyncio.current_task()
        self._connections.add(conn)
        try:
            await self._run_realtime(conn)
        except asyncio.CancelledError:
            conn.gone = True
            raise
        finally:
            closer = conn.closing_task
            if closer is not None and not closer.done():
                # Another task (session expiry) is completing the close handshake.
                await asyncio.wait({closer}, timeout=_WS_CLOSE_TIMEOUT)
            self._cancel_connection_tasks(conn)
            if not ws.closed and not conn.dropped:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), _WS_CLOSE_TIMEOUT)
            record.closed_at = time.monotonic()
            record.close_code = 1006 if conn.dropped else ws.close_code
            record.closed.set()
            self._connections.discard(conn)
        return ws

    async def _run_realtime(self, conn: _RealtimeConnection) -> None:
        query = conn.record.query
        if self.hang:
            async for msg in conn.ws:
                if msg.type == WSMsgType.TEXT:
                    with contextlib.suppress(ValueError):
                        event = json.loads(msg.data)
                        conn.record.client_events.append(
                            event if isinstance(event, dict) else {"_raw": msg.data}
                        )
                        conn.record.client_event_times.append(time.monotonic())
            return
        beta = conn.request.headers.get("OpenAI-Beta", "")
        if "realtime=v1" in beta.replace(" ", ""):
            self.validation_failures.append(f"beta header OpenAI-Beta: {beta}")
            await self._beta_shape_disabled(conn)
            return
        if query.get("intent") != "transcription":
            await self._handle_conversation_session(conn)
            return
        await self._run_transcription(conn)

    async def _read_client_events(self, conn: _RealtimeConnection) -> None:
        """Handle the client's text frames until it closes (binary frames are refused)."""
        async for msg in conn.ws:
            if msg.type == WSMsgType.TEXT:
                await self._on_client_text(conn, msg.data)
            elif msg.type == WSMsgType.BINARY:
                self.validation_failures.append("binary WebSocket frame (events must be text)")
                await self._send_error(
                    conn, _ApiError("invalid_json", "Binary frames are not supported.")
                )
            else:  # pragma: no cover - aiohttp ends the iteration on close/error
                break
            if conn.dropped or conn.ws.closed:
                break

    async def _beta_shape_disabled(self, conn: _RealtimeConnection) -> None:
        await self._send_error(conn, _ApiError("beta_api_shape_disabled", BETA_SHAPE_MESSAGE))
        await self._close(conn, 4000, "beta_api_shape_disabled")

    async def _close(self, conn: _RealtimeConnection, code: int, reason: str) -> None:
        task = asyncio.current_task()
        if task is not conn.handler_task:
            conn.closing_task = task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                conn.ws.close(code=code, message=reason.encode()), _WS_CLOSE_TIMEOUT
            )

    async def _expire_session(self, conn: _RealtimeConnection, after: float) -> None:
        await asyncio.sleep(after)
        await self._send_error(
            conn,
            _ApiError("session_expired", "Your session hit the maximum duration of 60 minutes."),
        )
        await self._close(conn, 1001, "session expired")

    async def _send(self, conn: _RealtimeConnection, event: dict[str, Any]) -> bool:
        """Validate, record and send one server event; False if the socket is gone."""
        event = {"event_id": _new_id("event_"), **event}
        failure = validate_server_event(event)
        if failure:
            self.validation_failures.append(failure)
        conn.record.server_events.append(copy.deepcopy(event))
        conn.record.server_event_times.append(time.monotonic())
        if event["type"] == "error":
            conn.record.errors_sent.append(event["error"])
        if conn.gone or conn.ws.closed:
            return False
        async with conn.send_lock:
            try:
                await conn.ws.send_str(json.dumps(event))
            except (ConnectionError, RuntimeError):
                conn.gone = True
                return False
        return True

    async def _send_error(
        self, conn: _RealtimeConnection, err: _ApiError, client_event_id: str | None = None
    ) -> bool:
        return await self._send(
            conn, {"type": "error", "error": err.body(client_event_id, realtime=True)}
        )

    async def _reject_event(
        self, conn: _RealtimeConnection, err: _ApiError, data: object, *, record: bool = True
    ) -> None:
        event_id = data.get("event_id") if isinstance(data, dict) else None
        if record:
            kind = data.get("type") if isinstance(data, dict) else None
            self.validation_failures.append(f"client event {kind!r}: {err.message}")
        await self._send_error(conn, err, event_id if isinstance(event_id, str) else None)

    async def _on_client_text(self, conn: _RealtimeConnection, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            conn.record.client_events.append({"_raw": text})
            conn.record.client_event_times.append(time.monotonic())
            await self._reject_event(
                conn,
                _ApiError(
                    "invalid_json",
                    "We could not parse the JSON body of your request. (HINT: This likely "
                    "means you aren't using your HTTP library correctly.)",
                ),
                None,
            )
            return
        conn.record.client_events.append(data if isinstance(data, dict) else {"_raw": data})
        conn.record.client_event_times.append(time.monotonic())
        if isinstance(data, dict) and self._is_beta_event(data):
            self.validation_failures.append(f"beta client event {data.get('type')!r}")
            await self._beta_shape_disabled(conn)
            return
        _model, err = validate_client_event(data)
        if err is not None:
            await self._reject_event(conn, err, data)
            return
        event_id = data.get("event_id")
        if conn.config.get("type") == "realtime":
            await self._on_conversation_event(conn, data, event_id)
            return
        await self._on_transcription_event(conn, data, event_id)

    @staticmethod
    def _is_beta_event(data: dict[str, Any]) -> bool:
        if data.get("type") == "transcription_session.update":
            return True
        session = data.get("session")
        return (
            data.get("type") == "session.update"
            and isinstance(session, dict)
            and ("input_audio_format" in session or "input_audio_transcription" in session)
        )
