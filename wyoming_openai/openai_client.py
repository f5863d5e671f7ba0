"""The one ``AsyncOpenAI`` client of the process, and how its failures are reported.

The SDK carries HTTP (``/v1/audio/*``) and the realtime WebSocket; every engine that
talks to OpenAI (or an OpenAI-compatible server) gets its client from
:func:`make_client`, and turns SDK exceptions into :class:`BridgeError` with
:func:`bridge_error`.
"""

from __future__ import annotations

import asyncio
import logging

import openai
from openai import AsyncOpenAI

from .config import OpenAISettings
from .errors import BridgeError, ErrorCode

_LOGGER = logging.getLogger(__name__)


def make_client(settings: OpenAISettings) -> AsyncOpenAI:
    """An SDK client with voice-assistant deadlines (seconds, not the SDK's 10 minutes).

    The realtime WebSocket URL is derived by the SDK from ``base_url`` (http->ws,
    https->wss), so an OpenAI-compatible or fake server needs no second setting.
    """
    api_key = settings.api_key.get_secret_value() if settings.api_key else ""
    return AsyncOpenAI(
        api_key=api_key,
        base_url=settings.base_url,
        organization=settings.organization,
        project=settings.project,
        timeout=openai.Timeout(settings.timeout, connect=settings.connect_timeout),
        max_retries=0,  # ours instead: wyoming_openai.retry (no retry of insufficient_quota)
    )


def _status_code_text(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            code = error.get("code")
            return str(code) if code else None
    return None


def _http_library_errors() -> tuple[type[Exception], type[Exception]] | None:
    """``(TimeoutException, TransportError)`` of the SDK's HTTP library (httpx2), if any."""
    try:
        import httpx2
    except ImportError:  # pragma: no cover - an SDK built on another HTTP library
        return None
    return httpx2.TimeoutException, httpx2.TransportError


def bridge_error(exc: BaseException, what: str) -> BridgeError:
    """Map a failure of the SDK, the WebSocket or the network to a :class:`BridgeError`.

    Args:
        exc: the exception raised while talking to the service.
        what: the operation, for the message (e.g. ``"transcription"``).

    The message never contains the API key: SDK messages quote the service's error
    text, which masks keys, and connection errors carry only host names.
    (Status codes and ``error.code`` values: ``shared/notes/openai.md``, HTTP > Errors.)
    """
    if isinstance(exc, BridgeError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        code_text = _status_code_text(exc)
        status = exc.status_code
        if status in (401, 403):
            return BridgeError(
                ErrorCode.AUTH_FAILED,
                f"{what} failed: the service refused the API key (HTTP {status})",
            )
        if status == 429 and code_text == "insufficient_quota":
            return BridgeError(
                ErrorCode.QUOTA_EXCEEDED,
                f"{what} failed: the account has no quota left (check billing)",
            )
        if status == 429:
            return BridgeError(ErrorCode.RATE_LIMITED, f"{what} failed: rate limited (HTTP 429)")
        if status == 404 or code_text == "model_not_found":
            return BridgeError(
                ErrorCode.MODEL_NOT_FOUND, f"{what} failed: model not found ({exc.message})"
            )
        if status >= 500:
            return BridgeError(
                ErrorCode.UPSTREAM_UNAVAILABLE, f"{what} failed: service error (HTTP {status})"
            )
        return BridgeError(ErrorCode.UPSTREAM_ERROR, f"{what} failed: HTTP {status}: {exc.message}")
    if isinstance(exc, openai.APITimeoutError | TimeoutError | asyncio.TimeoutError):
        return BridgeError(ErrorCode.TIMEOUT, f"{what} failed: the service did not answer in time")
    if isinstance(exc, openai.APIConnectionError | OSError):
        return BridgeError(
            ErrorCode.UPSTREAM_UNAVAILABLE, f"{what} failed: cannot reach the service"
        )
    # While a streamed body is read (``iter_bytes``), the SDK lets its HTTP library's own
    # errors through unwrapped (openai-python 3.52 ``_response.py``; the library is httpx2).
    http_errors = _http_library_errors()
    if http_errors is not None:
        timeout_error, transport_error = http_errors
        if isinstance(exc, timeout_error):
            return BridgeError(
                ErrorCode.TIMEOUT, f"{what} failed: the service stopped answering in time"
            )
        if isinstance(exc, transport_error):
            return BridgeError(
                ErrorCode.UPSTREAM_UNAVAILABLE,
                f"{what} failed: the connection to the service broke",
            )
    try:
        from websockets.exceptions import ConnectionClosed, InvalidStatus
    except ImportError:  # pragma: no cover - openai[realtime] pins websockets
        pass
    else:
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            if status in (401, 403):
                return BridgeError(
                    ErrorCode.AUTH_FAILED,
                    f"{what} failed: the service refused the API key (HTTP {status})",
                )
            if status == 404:
                return BridgeError(
                    ErrorCode.MODEL_NOT_FOUND,
                    f"{what} failed: the realtime endpoint was not found (HTTP 404)",
                )
            if status == 429:
                return BridgeError(ErrorCode.RATE_LIMITED, f"{what} failed: rate limited")
            return BridgeError(
                ErrorCode.UPSTREAM_UNAVAILABLE,
                f"{what} failed: the service refused the connection (HTTP {status})",
            )
        if isinstance(exc, ConnectionClosed):
            return BridgeError(
                ErrorCode.UPSTREAM_UNAVAILABLE,
                f"{what} failed: the service closed the connection",
            )
    _LOGGER.exception("Unexpected failure during %s", what, exc_info=exc)
    return BridgeError(ErrorCode.INTERNAL, f"{what} failed: internal error (see server log)")
