"""Errors the bridge reports to its clients, their codes, and what each code means for
retries and the local fallback.

Every failure that reaches a client is a :class:`BridgeError`: the Wyoming handler turns
it into an ``error {text, code}`` event. Messages are written for a person and never
contain credentials. Failures of the OpenAI side become BridgeErrors in one place,
:mod:`wyoming_openai.upstream`.
"""

from __future__ import annotations

from enum import StrEnum

from .redact import redact


class ConfigError(Exception):
    """A setting is unknown, missing or invalid. The message is one line naming it; the
    command line prints it and exits with code 2."""


class ModelLoadError(ConfigError):
    """A local model or voice cannot be found or loaded (a start-up error, like a bad
    setting: the message names the setting to fix)."""


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
    UNSUPPORTED_FORMAT = "unsupported-format"
    """An audio format this server cannot decode (unknown, or its decoder not installed)."""
    UNAUTHORIZED = "unauthorized"
    """The web face's token is missing or wrong."""
    FORBIDDEN_ORIGIN = "forbidden-origin"
    """A WebSocket opened by a page of another origin than the web face's (or the allowed)."""
    TOO_MANY_SESSIONS = "too-many-sessions"
    """``web.max_sessions`` live sessions are open already: try again later."""
    SESSION_TOO_LONG = "session-too-long"
    """More audio than ``web.max_session_seconds`` in one live session."""
    FRAME_TOO_LARGE = "frame-too-large"
    """A WebSocket message larger than ``web.max_frame_bytes``."""
    # OpenAI-compatible HTTP endpoints (web face)
    NOT_FOUND = "not-found"
    """No such route under ``/v1/`` (or no such model in ``GET /v1/models/{id}``)."""
    UPLOAD_TOO_LARGE = "upload-too-large"
    """An uploaded file larger than ``web.max_upload_bytes``."""
    UNDECODABLE_AUDIO = "undecodable-audio"
    """An uploaded file that holds no audio any of the decoders reads."""


RETRYABLE_CODES = frozenset(
    {ErrorCode.UPSTREAM_UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.RATE_LIMITED}
)
"""Transient upstream failures, worth another try: connection refused or dropped, HTTP 5xx,
no answer in time, 429 rate limit. Never retried: a refused key, no quota (429
``insufficient_quota`` never succeeds on retry), an unknown model, a rejected request."""

OUTAGE_CODES = RETRYABLE_CODES | {ErrorCode.QUOTA_EXCEEDED}
"""Upstream failures the local engines answer in place of OpenAI (``fallback: local``):
the service cannot be reached, fails, does not answer in time, or refuses more work. A
request rejected for what it is (bad audio, unknown model, refused key) is reported, not
hidden behind another engine: a local answer would mask a setting the user must fix."""


class BridgeError(Exception):
    """A failure to report to the client (a Wyoming ``error`` event).

    Args:
        code: the :class:`ErrorCode` sent as ``error.code``.
        message: the human-readable ``error.text``; registered secrets are removed
            (:mod:`wyoming_openai.redact`).
        model_retired: the service said the requested model is retired or unknown
            (set by :mod:`wyoming_openai.upstream`; true for every ``model-not-found``).
    """

    def __init__(self, code: ErrorCode, message: str, *, model_retired: bool = False) -> None:
        message = redact(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.model_retired = model_retired or code == ErrorCode.MODEL_NOT_FOUND

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed (:data:`RETRYABLE_CODES`)."""
        return self.code in RETRYABLE_CODES

    @property
    def outage(self) -> bool:
        """Whether the local engines may answer instead (:data:`OUTAGE_CODES`)."""
        return self.code in OUTAGE_CODES

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"
