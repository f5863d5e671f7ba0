"""``WS /v1/transcriptions``: live transcription for browsers, apps and gateways.

The protocol of the live-transcription seed, extended compatibly:

- client ``{"action": "start", "language": "en", "format": "pcm16", "rate": 16000,
  "token": "..."}`` (all but ``action`` optional; formats in
  :data:`wyoming_openai.web.decode.FORMATS`) -> server ``{"session_id": "..."}``;
- client binary audio frames -> server ``{"partial": "..."}`` as words arrive and
  ``{"final": "...", "latency_ms": 12.3}`` per utterance (:mod:`.live`);
- client ``{"action": "stop"}`` -> the final of what was heard, ``{"stopped": true}``, a
  normal close (1000);
- any error -> ``{"error": "plain words", "code": "<ErrorCode>"}``, then the close code of
  :data:`CLOSE_CODES` (RFC 6455 §7.4.1: 1003 wrong data, 1008 policy, 1009 too big, 1011
  internal, 1013 try again later).

One session's failure touches no other; a client that vanishes releases its upstream
session at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from .. import metrics
from ..audio import AudioFormat
from ..endpointing import EarlyEnd
from ..errors import BridgeError, ErrorCode
from ..stt.base import TranscribeRequest
from .auth import Gate
from .decode import AudioDecoder, make_decoder
from .live import Emit, Final, LiveEvent, LiveTranscription, Partial

_LOGGER = logging.getLogger(__name__)

WRONG_DATA, POLICY, TOO_BIG, INTERNAL, TRY_LATER = 1003, 1008, 1009, 1011, 1013

CLOSE_CODES: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: WRONG_DATA,
    ErrorCode.BAD_AUDIO_FORMAT: WRONG_DATA,
    ErrorCode.AUDIO_WITHOUT_START: WRONG_DATA,
    ErrorCode.UNSUPPORTED_FORMAT: WRONG_DATA,
    ErrorCode.UNAUTHORIZED: POLICY,
    ErrorCode.FORBIDDEN_ORIGIN: POLICY,
    ErrorCode.FRAME_TOO_LARGE: TOO_BIG,
    ErrorCode.SESSION_TOO_LONG: TOO_BIG,
    ErrorCode.TOO_MANY_SESSIONS: TRY_LATER,
    ErrorCode.UPSTREAM_UNAVAILABLE: TRY_LATER,
    ErrorCode.RATE_LIMITED: TRY_LATER,
    ErrorCode.TIMEOUT: TRY_LATER,
    ErrorCode.QUOTA_EXCEEDED: TRY_LATER,
}
"""WebSocket close code after an error; anything else closes with 1011."""


LiveFactory = Callable[[TranscribeRequest, AudioFormat, EarlyEnd, Emit], LiveTranscription]
"""Builds a live session: ``(request, source format, end policy, emit)``."""


class Limits:
    """What one live session may send.

    Args:
        max_frame_bytes: largest message, bytes.
        max_session_ms: longest session, milliseconds of audio.
    """

    def __init__(self, max_frame_bytes: int, max_session_ms: float) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.max_session_ms = max_session_ms


class TranscriptionSocket:
    """One ``WS /v1/transcriptions`` connection: reads the client's messages and routes
    them to a :class:`LiveTranscription`.

    Args:
        ws: the prepared WebSocket.
        live_factory: builds the live session once the audio format is known.
        gate: token checks.
        token_checked: the handshake carried the right token already.
        limits: message and session bounds.
        policy: when utterances end.
        default_language: the configured ``stt.language``.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        live_factory: LiveFactory,
        gate: Gate,
        token_checked: bool,
        limits: Limits,
        policy: EarlyEnd,
        default_language: str | None,
    ) -> None:
        self._ws = ws
        self._live_factory = live_factory
        self._gate = gate
        self._token_checked = token_checked
        self._limits = limits
        self._policy = policy
        self._default_language = default_language
        self._decoder: AudioDecoder | None = None
        self._live: LiveTranscription | None = None
        self._started = False
        self._language: str | None = None
        self.session_id = uuid.uuid4().hex

    async def run(self) -> None:
        """Serve the connection until it closes; never raises for the client's mistakes."""
        try:
            async for message in self._ws:
                if message.type == WSMsgType.TEXT:
                    await self._on_text(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self._on_audio(message.data)
                elif message.type == WSMsgType.ERROR:
                    _LOGGER.debug("WebSocket error: %s", self._ws.exception())
                if self._ws.closed:
                    break
        except BridgeError as err:
            await self.fail(err)
        except Exception:
            _LOGGER.exception("Live transcription session %s failed", self.session_id)
            await self.fail(BridgeError(ErrorCode.INTERNAL, "internal error (see server log)"))
        finally:
            await self.aclose()

    async def fail(self, error: BridgeError) -> None:
        """Send ``error`` and close with its code (the session ends)."""
        if self._ws.closed:
            return
        metrics.failed("websocket", "stt", error.code)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._ws.send_json({"error": error.message, "code": error.code.value})
            await self._ws.close(code=CLOSE_CODES.get(error.code, INTERNAL))

    async def aclose(self) -> None:
        """Release the live session and the decoder (idempotent)."""
        live, self._live = self._live, None
        if live is not None:
            await live.aclose()
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            await decoder.aclose()

    # ------------------------------------------------------------------ messages

    async def _on_text(self, data: str) -> None:
        if len(data) > self._limits.max_frame_bytes:
            raise BridgeError(ErrorCode.FRAME_TOO_LARGE, "message too large")
        try:
            message = json.loads(data)
        except ValueError:
            raise BridgeError(ErrorCode.BAD_REQUEST, "messages must be JSON objects") from None
        if not isinstance(message, dict):
            raise BridgeError(ErrorCode.BAD_REQUEST, "messages must be JSON objects")
        action = message.get("action")
        if action == "start":
            await self._start(message)
        elif action == "stop":
            await self._stop()
        else:
            raise BridgeError(ErrorCode.BAD_REQUEST, f"unknown action {action!r}")

    async def _start(self, message: dict[str, Any]) -> None:
        if self._started:
            raise BridgeError(ErrorCode.BAD_REQUEST, "the session is started already")
        token = message.get("token")
        if not self._token_checked and not self._gate.accepts(
            token if isinstance(token, str) else None
        ):
            raise BridgeError(ErrorCode.UNAUTHORIZED, "a valid token is required")
        language = message.get("language", self._default_language)
        audio_format = message.get("format", "pcm16")
        rate = message.get("rate")
        if language is not None and not isinstance(language, str):
            raise BridgeError(ErrorCode.BAD_REQUEST, "language must be a string")
        if not isinstance(audio_format, str):
            raise BridgeError(ErrorCode.BAD_REQUEST, "format must be a string")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int)):
            raise BridgeError(ErrorCode.BAD_REQUEST, "rate must be an integer (Hz)")
        self._decoder = make_decoder(audio_format, rate)
        self._language = language or None
        self._started = True
        await self._ws.send_json({"session_id": self.session_id})

    async def _on_audio(self, data: bytes) -> None:
        if len(data) > self._limits.max_frame_bytes:
            raise BridgeError(ErrorCode.FRAME_TOO_LARGE, "audio frame too large")
        if self._decoder is None:
            raise BridgeError(ErrorCode.AUDIO_WITHOUT_START, "audio before start")
        self._feed(self._decoder.feed(data))

    def _feed(self, pcm: bytes) -> None:
        decoder = self._decoder
        if not pcm or decoder is None or decoder.output_format is None:
            return
        if self._live is None:
            self._live = self._live_factory(
                TranscribeRequest(language=self._language),
                decoder.output_format,
                self._policy,
                self._emit,
            )
        self._live.add_audio(pcm)
        if self._live.audio_ms > self._limits.max_session_ms:
            raise BridgeError(
                ErrorCode.SESSION_TOO_LONG,
                f"session longer than {self._limits.max_session_ms / 1000:g} s of audio",
            )

    async def _stop(self) -> None:
        if self._decoder is None:
            raise BridgeError(ErrorCode.BAD_REQUEST, "stop before start")
        self._feed(await self._decoder.finish())
        if self._live is not None:
            await self._live.stop()
        if not self._ws.closed:
            await self._ws.send_json({"stopped": True})
            await self._ws.close()

    async def _emit(self, event: LiveEvent) -> None:
        if isinstance(event, BridgeError):
            await self.fail(event)
            return
        if self._ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            if isinstance(event, Partial):
                await self._ws.send_json({"partial": event.text})
            elif isinstance(event, Final):
                latency = round(event.latency_ms, 1)
                await self._ws.send_json({"final": event.text, "latency_ms": latency})
