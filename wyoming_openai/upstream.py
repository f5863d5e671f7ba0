"""The one place where failures of the OpenAI side become :class:`BridgeError`.

Two kinds of failure arrive from upstream:

- exceptions: the SDK's HTTP errors (``openai.APIStatusError`` and its subclasses, with the
  body ``{"error": {"message", "type", "param", "code"}}``), its connection and timeout
  errors, the HTTP library's errors while a streamed body is read, and the WebSocket's
  (``websockets.exceptions.InvalidStatus`` at the handshake, ``ConnectionClosed`` later):
  :func:`from_exception`;
- ``error`` objects of the Realtime API (the ``error`` server event, or a failed
  response's ``status_details.error``; OpenAI API reference, Realtime server events,
  ``error``): :func:`from_realtime_error`.

The result carries what callers act on: its ``code``, ``retryable`` and ``outage``
(:mod:`wyoming_openai.errors`), and ``model_retired``: the service answered that the model
is retired or unknown (HTTP 400/404/410 with ``error.code`` ``model_not_found`` or a
message saying the model "has been deprecated"), so engines move to the current model.
Messages never contain the API key: the service's own texts mask keys, and connection
errors carry only host names.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import openai

from .errors import BridgeError, ErrorCode

_LOGGER = logging.getLogger(__name__)

RETIRED_CODES = frozenset(
    {"model_not_found", "model_deprecated", "deprecated_model", "model_retired", "model_shutdown"}
)
"""``error.code`` values that mean the requested model is gone or unknown."""

RETIRED_STATUSES = frozenset({400, 404, 410})
"""HTTP statuses a retired-model answer comes with."""

_RETIRED_TEXT = re.compile(
    r"deprecat|retired|shut ?down|no longer (?:available|supported|exists)", re.IGNORECASE
)

AUTH_CODES = frozenset({"invalid_api_key", "authentication_error"})
"""Realtime ``error.code`` values of a refused key."""


def _error_object(exc: openai.APIStatusError) -> dict[str, Any]:
    """The ``error`` object of an HTTP error body (``{}`` when the body has none)."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error
    return {}


def _says_model_retired(exc: openai.APIStatusError, details: dict[str, Any]) -> bool:
    if exc.status_code not in RETIRED_STATUSES:
        return False
    if details.get("code") in RETIRED_CODES:
        return True
    message = str(details.get("message") or exc.message)
    return "model" in message.lower() and bool(_RETIRED_TEXT.search(message))


def _from_status(exc: openai.APIStatusError, what: str) -> BridgeError:
    details = _error_object(exc)
    code = details.get("code")
    status = exc.status_code
    retired = _says_model_retired(exc, details)
    if status in (401, 403):
        return BridgeError(
            ErrorCode.AUTH_FAILED, f"{what} failed: the service refused the API key (HTTP {status})"
        )
    if status == 429 and code == "insufficient_quota":
        return BridgeError(
            ErrorCode.QUOTA_EXCEEDED,
            f"{what} failed: the account has no quota left (check billing)",
        )
    if status == 429:
        return BridgeError(ErrorCode.RATE_LIMITED, f"{what} failed: rate limited (HTTP 429)")
    if status == 404 or code == "model_not_found":
        return BridgeError(
            ErrorCode.MODEL_NOT_FOUND, f"{what} failed: model not found ({exc.message})"
        )
    if status >= 500:
        return BridgeError(
            ErrorCode.UPSTREAM_UNAVAILABLE, f"{what} failed: service error (HTTP {status})"
        )
    return BridgeError(
        ErrorCode.UPSTREAM_ERROR,
        f"{what} failed: HTTP {status}: {exc.message}",
        model_retired=retired,
    )


def _http_library_errors() -> tuple[type[Exception], type[Exception]] | None:
    """``(TimeoutException, TransportError)`` of the SDK's HTTP library (httpx2), if any."""
    try:
        import httpx2
    except ImportError:  # pragma: no cover - an SDK built on another HTTP library
        return None
    return httpx2.TimeoutException, httpx2.TransportError


def _from_websocket(exc: BaseException, what: str) -> BridgeError | None:
    try:
        from websockets.exceptions import ConnectionClosed, InvalidStatus
    except ImportError:  # pragma: no cover - openai[realtime] pins websockets
        return None
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
            ErrorCode.UPSTREAM_UNAVAILABLE, f"{what} failed: the service closed the connection"
        )
    return None


def from_exception(exc: BaseException, what: str) -> BridgeError:
    """Classify a failure of the SDK, the WebSocket or the network.

    Args:
        exc: the exception raised while talking to the service (a BridgeError is returned
            as it is).
        what: the operation, for the message (e.g. ``"transcription"``).

    Returns:
        the error to report; an unexpected exception is logged with its traceback and
        becomes ``internal-error``.
    """
    if isinstance(exc, BridgeError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        return _from_status(exc, what)
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
    websocket_error = _from_websocket(exc, what)
    if websocket_error is not None:
        return websocket_error
    _LOGGER.exception("Unexpected failure during %s", what, exc_info=exc)
    return BridgeError(ErrorCode.INTERNAL, f"{what} failed: internal error (see server log)")


def from_realtime_error(error: Any, what: str) -> BridgeError:
    """Classify a Realtime API ``error`` object (a dict as received, or the SDK's
    ``RealtimeError``/``status_details.error`` model): ``code``, ``type``, ``message``.

    ``session_expired`` (the 60-minute limit) and ``server_error`` are outages; the
    message is the service's own.
    """
    if isinstance(error, dict):
        code, kind, message = error.get("code"), error.get("type"), error.get("message")
    else:
        code = getattr(error, "code", None)
        kind = getattr(error, "type", None)
        message = getattr(error, "message", None)
    code = code or kind or "error"
    message = message or "no message"
    if code == "model_not_found":
        return BridgeError(ErrorCode.MODEL_NOT_FOUND, f"{what} failed: {message}")
    if code in AUTH_CODES:
        return BridgeError(ErrorCode.AUTH_FAILED, f"{what} failed: the API key was refused")
    if code == "insufficient_quota":
        return BridgeError(ErrorCode.QUOTA_EXCEEDED, f"{what} failed: no quota left")
    if code == "rate_limit_exceeded":
        return BridgeError(ErrorCode.RATE_LIMITED, f"{what} failed: rate limited ({message})")
    if code in ("session_expired", "server_error") or kind == "server_error":
        return BridgeError(ErrorCode.UPSTREAM_UNAVAILABLE, f"{what} failed: {message} ({code})")
    return BridgeError(ErrorCode.UPSTREAM_ERROR, f"{what} failed: {message} ({code})")
