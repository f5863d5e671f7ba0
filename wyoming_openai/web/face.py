"""The web face: an aiohttp server beside the Wyoming one, on the same engines.

Routes: ``GET /`` (the page) and ``/static/*``; ``GET /healthz``; ``WS /v1/transcriptions``
(:mod:`.ws`); ``POST /v1/audio/speech`` (:mod:`.speech`); ``POST /v1/audio/transcriptions``
(:mod:`.transcriptions`); ``GET /v1/models`` and ``GET /v1/models/{id}`` (:mod:`.models`).
It only routes: every request is served by the engines
:func:`~wyoming_openai.engines.build_engines` built, so the local fallback, warm sessions,
speculative commit, model moves and redaction apply as on the Wyoming side. HTTP errors
have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}`` (API reference,
Error codes), with the status OpenAI would use; also for an unknown route, a wrong method
or a body too large under ``/v1/`` (404, 404, 413).

``GET /metrics``: the Prometheus text format (:mod:`wyoming_openai.metrics`), behind the
token as the API routes are (Prometheus sends it: ``authorization`` in a scrape config).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlparse

from aiohttp import web

from .. import metrics
from ..audio import AudioFormat
from ..config import Settings
from ..endpointing import EarlyEnd
from ..engines import Engines
from ..errors import BridgeError, ErrorCode
from ..redact import register_secret
from ..stt.base import TranscribeRequest
from .auth import Gate
from .health import health
from .live import Emit, LiveTranscription
from .models import model_list, model_object
from .speech import parse_request, stream_speech
from .transcriptions import read_form, serve_transcription
from .ws import Limits, TranscriptionSocket

_LOGGER = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.EMPTY_TEXT: 400,
    ErrorCode.UNKNOWN_VOICE: 400,
    ErrorCode.TEXT_TOO_LONG: 400,
    ErrorCode.UNSUPPORTED_FORMAT: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN_ORIGIN: 403,
    ErrorCode.FRAME_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.TOO_MANY_SESSIONS: 429,
    ErrorCode.UPSTREAM_UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 503,
    # OpenAI-compatible endpoints
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UPLOAD_TOO_LARGE: 413,
    ErrorCode.UNDECODABLE_AUDIO: 415,
    ErrorCode.UTTERANCE_TOO_LONG: 400,
}
"""HTTP status of an error; anything else is 500."""

SESSION_CLOSE_TIMEOUT = 5.0
"""Seconds open WebSocket sessions get to close at shutdown."""


def error_response(error: BridgeError) -> web.Response:
    """``error`` as OpenAI's error body with its HTTP status."""
    status = HTTP_STATUS.get(error.code, 500)
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": error.message, "type": kind, "param": None, "code": error.code}}
    return web.json_response(body, status=status)


@web.middleware
async def openai_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own 404, 405 and 413 under ``/v1/`` as OpenAI's error body (OpenAI
    answers an unknown route or method with 404 ``Invalid URL (METHOD /path)``)."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        if not request.path.startswith("/v1/"):
            raise
        message = f"Invalid URL ({request.method} {request.path})"
        return error_response(BridgeError(ErrorCode.NOT_FOUND, message))
    except web.HTTPRequestEntityTooLarge:
        if not request.path.startswith("/v1/"):
            raise
        return error_response(BridgeError(ErrorCode.UPLOAD_TOO_LARGE, "the body is too large"))


def _is_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class WebFace:
    """The web face of the process.

    Args:
        settings: the process's settings (``web`` section, limits, STT/TTS defaults).
        engines: the engines every face shares.

    Usage: ``await face.start()`` (``/healthz`` says "starting" until :attr:`ready` is
    set), ``await face.stop()``.
    """

    def __init__(self, settings: Settings, engines: Engines) -> None:
        self._settings = settings
        self._engines = engines
        web_settings = settings.web
        token = web_settings.token.get_secret_value() if web_settings.token else None
        if token:
            register_secret(token)
        self._gate = Gate(token, web_settings.allowed_origins)
        self._limits = Limits(web_settings.max_frame_bytes, web_settings.max_session_seconds * 1000)
        self._policy = EarlyEnd(silence_ms=settings.stt.early_transcript_silence * 1000)
        self._sockets: set[TranscriptionSocket] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._created = int(time.time())
        self.ready = False
        """Whether the engines are prepared (``/healthz`` answers 200 once set)."""

    @property
    def url(self) -> str:
        """The page's URL (with the port really listened on)."""
        parsed = urlparse(self._settings.web.uri)
        host = parsed.hostname or "127.0.0.1"
        port = parsed.port
        if self._site is not None and self._runner is not None:
            for address in self._runner.addresses:
                port = address[1]
                break
        shown = f"[{host}]" if ":" in host else host
        return f"{parsed.scheme}://{shown}:{port}/"

    @property
    def session_count(self) -> int:
        """Live transcription sessions open now."""
        return len(self._sockets)

    async def start(self) -> None:
        """Listen on ``web.uri``.

        Raises:
            OSError: the address cannot be listened on.
            ssl.SSLError: the certificate or key cannot be loaded.
        """
        app = web.Application(
            client_max_size=self._settings.web.max_frame_bytes + 64 * 1024,
            middlewares=[openai_errors],
        )
        app.router.add_get("/", self._page)
        app.router.add_static("/static/", STATIC, show_index=False)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/v1/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/v1/audio/transcriptions", self._audio_transcriptions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{id}", self._model)
        web_settings = self._settings.web
        context = None
        if web_settings.certfile is not None and web_settings.keyfile is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(web_settings.certfile, web_settings.keyfile)
        parsed = urlparse(web_settings.uri)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, parsed.hostname, parsed.port, ssl_context=context)
        await self._site.start()
        _LOGGER.info("Web face on %s", self.url)
        if not self._gate.token_required and not _is_local(parsed.hostname or ""):
            _LOGGER.warning(
                "The web face listens beyond this machine (%s) without a token: anyone who "
                "can reach it can use the engines (set web.token)",
                parsed.hostname,
            )

    async def stop(self) -> None:
        """Close every live session (their upstream sessions too), then stop listening."""
        sockets = list(self._sockets)
        for socket in sockets:
            await socket.fail(BridgeError(ErrorCode.UPSTREAM_UNAVAILABLE, "the server is stopping"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SESSION_CLOSE_TIMEOUT):
                await asyncio.gather(*(s.aclose() for s in sockets), return_exceptions=True)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._site = None

    # ------------------------------------------------------------------ routes

    async def _page(self, request: web.Request) -> web.StreamResponse:
        del request
        return web.FileResponse(STATIC / "index.html")

    async def _health(self, request: web.Request) -> web.Response:
        del request
        status, body = health(self._engines, self.ready, self._gate.token_required)
        return web.json_response(body, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            self._gate.check_http(request)  # Prometheus sends it (scrape config: authorization)
        except BridgeError as err:
            return error_response(err)
        body, content_type = await asyncio.to_thread(metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        try:
            self._gate.check_http(request)
            try:
                body = await request.json()
            except (ValueError, UnicodeDecodeError):
                raise BridgeError(ErrorCode.BAD_REQUEST, "the body must be JSON") from None
            speech = parse_request(body, self._settings.limits.max_text_chars)
            return await stream_speech(
                request, self._engines.tts, speech, self._settings.tts.lookahead
            )
        except BridgeError as err:
            _LOGGER.info("Speech request refused: %s", err)
            metrics.failed("http", "tts", err.code)
            return error_response(err)

    async def _audio_transcriptions(self, request: web.Request) -> web.StreamResponse:
        try:
            self._gate.check_http(request)
            form = await read_form(request, self._settings.web.max_upload_bytes)
            return await serve_transcription(
                request,
                self._engines.stt,
                form,
                max_seconds=self._settings.limits.max_utterance_seconds,
                default_language=self._settings.stt.language,
            )
        except BridgeError as err:
            _LOGGER.info("Transcription request refused: %s", err)
            metrics.failed("http", "stt", err.code)
            return error_response(err)
        except ConnectionError:
            _LOGGER.debug("Transcription client hung up")
            return web.Response(status=499)

    async def _models(self, request: web.Request) -> web.Response:
        try:
            self._gate.check_http(request)
        except BridgeError as err:
            return error_response(err)
        return web.json_response(model_list(self._engines, self._settings, self._created))

    async def _model(self, request: web.Request) -> web.Response:
        try:
            self._gate.check_http(request)
            entry = model_object(
                self._engines, self._settings, self._created, request.match_info["id"]
            )
        except BridgeError as err:
            return error_response(err)
        return web.json_response(entry)

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        protocol = self._gate.protocol_token(request)
        ws = web.WebSocketResponse(
            protocols=(protocol,) if protocol else (),
            max_msg_size=self._settings.web.max_frame_bytes * 2 + 1024,
            heartbeat=30.0,
        )
        await ws.prepare(request)
        token = protocol.removeprefix("bearer.") if protocol else None
        socket = TranscriptionSocket(
            ws,
            self._live,
            self._gate,
            token_checked=token is not None and self._gate.accepts(token),
            limits=self._limits,
            policy=self._policy,
            default_language=self._settings.stt.language,
        )
        try:
            self._gate.check_origin(request)
            if protocol is not None and not self._gate.accepts(token):
                raise BridgeError(ErrorCode.UNAUTHORIZED, "a valid token is required")
            if len(self._sockets) >= self._settings.web.max_sessions:
                raise BridgeError(
                    ErrorCode.TOO_MANY_SESSIONS,
                    f"{self._settings.web.max_sessions} sessions are open; try again later",
                )
        except BridgeError as err:
            _LOGGER.info("Live session refused: %s", err)
            await socket.fail(err)
            return ws
        self._sockets.add(socket)
        try:
            await socket.run()
        finally:
            self._sockets.discard(socket)
        return ws

    def _live(
        self, request: TranscribeRequest, source: AudioFormat, policy: EarlyEnd, emit: Emit
    ) -> LiveTranscription:
        return LiveTranscription(self._engines.stt, request, source, policy, emit)
