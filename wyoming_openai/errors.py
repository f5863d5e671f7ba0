"""Errors the bridge reports to Wyoming clients, and their codes.

Every failure that reaches a client is a :class:`BridgeError`: the handler turns it
into a Wyoming ``error {text, code}`` event. Messages are written for a person and
never contain credentials.
"""

from __future__ import annotations

from enum import StrEnum

from .redact import redact


class ErrorCode(StrEnum):
    """Machine-readable codes sent in Wyoming ``error`` events."""

    BAD_AUDIO_FORMAT = "bad-audio-format"
    """``audio-start``/``audio-chunk`` declared an impossible rate, width or channel count."""
    AUDIO_WITHOUT_START = "audio-without-start"
    """``audio-chunk`` or ``audio-stop`` arrived with no ``audio-start`` before it."""
    BAD_FRAME = "bad-frame"
    """The bytes are not a valid Wyoming event (bad header, oversized data or payload);
    the connection is closed after this error."""
    UTTERANCE_TOO_LONG = "utterance-too-long"
    """More audio than ``limits.max_utterance_seconds`` in one utterance."""
    TEXT_TOO_LONG = "text-too-long"
    """More text than ``limits.max_text_chars`` in one synthesis."""
    BAD_REQUEST = "bad-request"
    """An event's data is malformed (missing or mistyped field)."""
    EMPTY_TEXT = "empty-text"
    """``synthesize`` with no speakable text."""
    UNKNOWN_VOICE = "unknown-voice"
    """The requested voice is not one this server offers."""
    AUTH_FAILED = "auth-failed"
    """The upstream service refused the API key (HTTP 401/403)."""
    QUOTA_EXCEEDED = "quota-exceeded"
    """The account has no quota left (HTTP 429 ``insufficient_quota``)."""
    RATE_LIMITED = "rate-limited"
    """Too many requests (HTTP 429 ``rate_limit_exceeded``)."""
    MODEL_NOT_FOUND = "model-not-found"
    """The configured model is unknown to the service (HTTP 404 / ``model_not_found``)."""
    UPSTREAM_UNAVAILABLE = "upstream-unavailable"
    """The service could not be reached, or failed (connection error, HTTP 5xx)."""
    UPSTREAM_ERROR = "upstream-error"
    """The service rejected the request for another reason (HTTP 4xx, realtime ``error``)."""
    TIMEOUT = "timeout"
    """The service did not answer within the configured deadline."""
    STT_FAILED = "stt-failed"
    """Transcription of the utterance failed (``...transcription.failed``)."""
    INTERNAL = "internal-error"
    """A fault inside this server; details are in its log."""


class BridgeError(Exception):
    """A failure to report to the client as a Wyoming ``error`` event.

    Args:
        code: the :class:`ErrorCode` sent as ``error.code``.
        message: the human-readable ``error.text``; registered secrets are removed
            (:mod:`wyoming_openai.redact`).
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        message = redact(message)
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"
