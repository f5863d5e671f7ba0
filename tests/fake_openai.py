"""A fake OpenAI API that speaks the real wire protocol, for tests.

``FakeOpenAI`` is an aiohttp server on ``127.0.0.1`` (random free port) implementing:

* ``GET /v1/realtime?intent=transcription`` -- a GA-shape Realtime *transcription* session over
  WebSocket (``session.created`` / ``session.update`` / ``input_audio_buffer.*`` /
  ``conversation.item.input_audio_transcription.*``), with the service's model rules;
* ``GET /v1/realtime?model=...`` -- a GA-shape Realtime *conversation* session that speaks:
  ``session.update`` (type ``realtime``), ``conversation.item.create`` / ``.delete``,
  ``response.create`` -> ``response.output_audio.delta`` / ``..._transcript.delta`` ... ->
  ``response.done``, and ``response.cancel`` (the synthesizer reads the last user message);
* ``POST /v1/audio/transcriptions`` -- multipart upload of a WAV file, JSON/text or SSE answer;
* ``POST /v1/audio/speech`` -- JSON request, raw 24 kHz PCM streamed back in chunks.

Every client event is validated against the ``openai`` SDK's own pydantic types
(``RealtimeClientEvent``), plus a check that no model in the tree carries unknown fields (the SDK
models silently accept extras). Every server event the fake sends is validated against
``RealtimeServerEvent`` too. Failures are recorded in ``FakeOpenAI.validation_failures``, which a
test of a well-behaved client asserts stays empty.

Audio units: PCM is always signed 16-bit little-endian mono ("s16le"); lengths are bytes unless a
name says otherwise; rates are Hz; delays and timestamps are seconds (``time.monotonic()``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import io
import json
import math
import re
import secrets
import string
import time
import typing
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import soxr
from aiohttp import WSMsgType, web
from openai.types.audio import Transcription, TranscriptionStreamEvent
from openai.types.realtime import (
    RealtimeClientEvent,
    RealtimeServerEvent,
    RealtimeTranscriptionSessionCreateResponse,
)
from pydantic import BaseModel, TypeAdapter, ValidationError

__all__ = [
    "DEFAULT_API_KEY",
    "REALTIME_RATE",
    "FakeOpenAI",
    "RealtimeSessionRecord",
    "SpeechStreamRecord",
    "Synthesizer",
    "Transcriber",
    "default_synthesizer",
    "default_transcriber",
    "split_deltas",
]

DEFAULT_API_KEY = "sk-test-fake-key-0123456789"
REALTIME_RATE = 24000
"""Sample rate (Hz) of ``audio/pcm`` in the Realtime API and of ``/v1/audio/speech`` pcm."""

_PCM_BYTES_PER_MS = REALTIME_RATE * 2 // 1000  # 48
_G711_BYTES_PER_MS = 8  # 8 kHz, one byte per sample
_MIN_COMMIT_MS = 100.0
_MAX_APPEND_BYTES = 15 * 1024 * 1024
_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
_MAX_TEXT_CHARS = 4096
_WS_CLOSE_TIMEOUT = 2.0

Transcriber = Callable[[bytes, str | None, str | None], str]
"""``transcriber(pcm, language, prompt) -> transcript``; ``pcm`` is 24 kHz s16le mono.

Called synchronously in a worker thread (``asyncio.to_thread``)."""

Synthesizer = Callable[[str, str], bytes]
"""``synthesizer(text, voice) -> pcm``; returns 24 kHz s16le mono PCM.

Called synchronously in a worker thread. ``voice`` is the voice name, or the ``id`` of a custom
voice object."""

TTS_VOICES = frozenset(
    {
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "onyx",
        "nova",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    }
)
TTS_RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
_LEGACY_TTS_MODELS = frozenset({"tts-1", "tts-1-hd"})
REALTIME_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
"""Built-in voices of realtime sessions (``openai.types.realtime.realtime_audio_config_output``)."""
_MULTI_LANGUAGE_MODELS = frozenset({"gpt-transcribe", "gpt-live-transcribe"})
_NO_VAD_MODELS = frozenset({"gpt-live-transcribe", "gpt-realtime-whisper"})
_DURATION_BILLED_MODELS = frozenset({"whisper-1", "gpt-realtime-whisper"})

BETA_SHAPE_MESSAGE = "The beta Realtime API shape is no longer supported. Use the GA shape."


# --------------------------------------------------------------------------------------------
# Defaults and small helpers
# --------------------------------------------------------------------------------------------


def default_transcriber(pcm: bytes, language: str | None, prompt: str | None) -> str:
    """Deterministic stand-in transcriber: ``"hello world"`` for >= 100 ms of 24 kHz audio."""
    del language, prompt
    return "hello world" if len(pcm) >= _MIN_COMMIT_MS * _PCM_BYTES_PER_MS else ""


def default_synthesizer(text: str, voice: str) -> bytes:
    """Deterministic stand-in synthesizer: a 440 Hz sine, 50 ms (1,200 samples) per character.

    Returns 24 kHz s16le mono PCM (2,400 bytes per character of ``text``).
    """
    del voice
    n = len(text) * REALTIME_RATE // 20
    t = np.arange(n, dtype=np.float64) / REALTIME_RATE
    return (np.sin(2 * np.pi * 440.0 * t) * 0.3 * 32767).astype("<i2").tobytes()


def split_deltas(text: str) -> list[str]:
    """Split a transcript into per-word deltas that concatenate back to ``text`` exactly.

    Each word keeps the whitespace that follows it (leading whitespace goes with the first word).
    """
    return re.findall(r"\s*\S+\s*", text) if text.strip() else ([text] if text else [])


def _new_id(prefix: str, length: int = 21) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _resample(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """Resample s16le mono PCM with soxr (a trailing odd byte is dropped)."""
    if len(pcm) % 2:
        pcm = pcm[:-1]
    if in_rate == out_rate or not pcm:
        return pcm
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    y = soxr.resample(x, in_rate, out_rate)
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype("<i2").tobytes()


def _ulaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 mu-law (one byte per sample) to s16le."""
    u = (~np.frombuffer(data, dtype=np.uint8)).astype(np.int32)
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + 0x84) << exponent
    sample = magnitude - 0x84
    return np.where(u & 0x80, -sample, sample).astype("<i2").tobytes()


def _alaw_to_pcm16(data: bytes) -> bytes:
    """Decode G.711 A-law (one byte per sample) to s16le."""
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype("<i2").tobytes()


def _wire_to_pcm24k(data: bytes, fmt_type: str) -> bytes:
    """Convert input-buffer bytes in the session's format to 24 kHz s16le mono."""
    if fmt_type == "audio/pcmu":
        return _resample(_ulaw_to_pcm16(data), 8000, REALTIME_RATE)
    if fmt_type == "audio/pcma":
        return _resample(_alaw_to_pcm16(data), 8000, REALTIME_RATE)
    return data


def _usage(model: str | None, pcm24k: bytes, prompt: str | None, text: str) -> dict[str, Any]:
    """A plausible ``usage`` object: duration-billed for whisper models, token-billed otherwise."""
    seconds = len(pcm24k) / (REALTIME_RATE * 2)
    if model in _DURATION_BILLED_MODELS:
        return {"type": "duration", "seconds": round(seconds, 3)}
    audio_tokens = max(1, math.ceil(seconds * 10))
    text_tokens = len((prompt or "").split())
    output_tokens = len(text.split())
    return {
        "type": "tokens",
        "input_tokens": audio_tokens + text_tokens,
        "output_tokens": output_tokens,
        "total_tokens": audio_tokens + text_tokens + output_tokens,
        "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": text_tokens},
    }


# --------------------------------------------------------------------------------------------
# Validation against the SDK's types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ApiError:
    """An OpenAI-style error: ``code``, ``message``, ``param`` and error ``type``."""

    code: str | None
    message: str
    param: str | None = None
    type: str = "invalid_request_error"

    def body(self, event_id: str | None = None, *, realtime: bool = False) -> dict[str, Any]:
        err: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
        }
        if realtime:
            err["event_id"] = event_id
        return err


def _union_members(alias: Any) -> dict[str, type[BaseModel]]:
    """Map each ``type`` literal of an (annotated) union of SDK event models to its model."""
    union = typing.get_args(alias)[0]
    members: dict[str, type[BaseModel]] = {}
    for member in typing.get_args(union):
        for literal in typing.get_args(member.model_fields["type"].annotation):
            members[literal] = member
    return members


_CLIENT_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
_SERVER_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
_CLIENT_EVENT_TYPES = _union_members(RealtimeClientEvent)
_SERVER_EVENT_TYPES = _union_members(RealtimeServerEvent)
_TRANSCRIPTION_SESSION_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    RealtimeTranscriptionSessionCreateResponse
)
_STT_STREAM_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(TranscriptionStreamEvent)
_STT_RESPONSE_ADAPTER: TypeAdapter[Any] = TypeAdapter(Transcription)
_MEMBER_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {}

_PRIMITIVE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _is_branch_tag(token: object) -> bool:
    """Whether a pydantic error-location token names a union branch rather than a field."""
    if not isinstance(token, str):
        return False
    return bool(re.fullmatch(r"[A-Z]\w*", token)) or "[" in token or token in _PRIMITIVE_TAGS


def _format_loc(loc: tuple[Any, ...]) -> str:
    path = ""
    for token in loc:
        if _is_branch_tag(token):
            continue
        if isinstance(token, int):
            path += f"[{token}]"
        else:
            path += f".{token}" if path else str(token)
    return path


def _pick_error(exc: ValidationError) -> _ApiError:
    """Turn a pydantic error into the service's style, ignoring union branches ruled out by
    their ``type`` discriminator (pydantic reports every branch of a non-discriminated union)."""
    errors = exc.errors()
    wrong_branches = [
        e["loc"][:-1]
        for e in errors
        if e["type"] == "literal_error"
        and e["loc"]
        and e["loc"][-1] == "type"
        and len(e["loc"]) >= 2
        and _is_branch_tag(e["loc"][-2])
    ]
    relevant = [
        e for e in errors if not any(e["loc"][: len(b)] == b for b in wrong_branches)
    ] or errors
    e = relevant[0]
    path = _format_loc(tuple(e["loc"]))
    kind = e["type"]
    if kind == "missing":
        return _ApiError(
            "missing_required_parameter", f"Missing required parameter: '{path}'.", path
        )
    if kind == "literal_error":
        expected = (e.get("ctx") or {}).get("expected", "")
        return _ApiError(
            "invalid_value",
            f"Invalid value: {e['input']!r} for '{path}'. Supported values are: {expected}.",
            path,
        )
    if kind.endswith("_type") or kind in {"model_type", "dict_type", "list_type"}:
        return _ApiError(
            "invalid_type",
            f"Invalid type for '{path}': {e['msg']}, but got {type(e['input']).__name__}.",
            path,
        )
    return _ApiError("invalid_value", f"Invalid value for '{path}': {e['msg']}.", path)


def _find_unknown_field(
    obj: object, path: str, allowed_extra: dict[str, frozenset[str]] | None = None
) -> str | None:
    """Return the path of the first unknown (extra) field in a validated model tree, or None."""
    if isinstance(obj, BaseModel):
        extra = obj.__pydantic_extra__ or {}
        allowed = (allowed_extra or {}).get(path, frozenset())
        for key in extra:
            if key not in allowed:
                return f"{path}.{key}" if path else key
        for name, info in type(obj).model_fields.items():
            key = info.alias or name
            child = f"{path}.{key}" if path else key
            found = _find_unknown_field(getattr(obj, name), child, allowed_extra)
            if found:
                return found
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            found = _find_unknown_field(item, f"{path}[{i}]", allowed_extra)
            if found:
                return found
    elif isinstance(obj, dict):
        for key, value in obj.items():
            found = _find_unknown_field(value, f"{path}.{key}", allowed_extra)
            if found:
                return found
    return None


def _validate_event(
    data: object,
    *,
    adapter: TypeAdapter[Any],
    members: dict[str, type[BaseModel]],
    allowed_extra: dict[str, frozenset[str]] | None = None,
) -> tuple[Any, _ApiError | None]:
    """Validate one event dict against an SDK event union, strictly (no unknown fields)."""
    if not isinstance(data, dict):
        return None, _ApiError(
            "invalid_type", "Invalid event: expected a JSON object at the top level.", None
        )
    event_type = data.get("type")
    if not isinstance(event_type, str):
        return None, _ApiError("missing_required_parameter", "Missing required parameter: 'type'.")
    if event_type not in members:
        supported = ", ".join(repr(t) for t in sorted(members))
        return None, _ApiError(
            "invalid_value",
            f"Invalid value: {event_type!r}. Supported values are: {supported}.",
            "type",
        )
    try:
        model = adapter.validate_python(data)
    except ValidationError:
        member = members[event_type]
        member_adapter = _MEMBER_ADAPTERS.get(member)
        if member_adapter is None:
            member_adapter = _MEMBER_ADAPTERS[member] = TypeAdapter(member)
        try:
            member_adapter.validate_python(data)
        except ValidationError as exc:
            return None, _pick_error(exc)
        return None, _ApiError("invalid_value", f"Invalid '{event_type}' event.")
    unknown = _find_unknown_field(model, "", allowed_extra)
    if unknown:
        return None, _ApiError("unknown_parameter", f"Unknown parameter: '{unknown}'.", unknown)
    return model, None


def validate_client_event(data: object) -> tuple[Any, _ApiError | None]:
    """Validate a decoded client event against ``RealtimeClientEvent`` (no unknown fields)."""
    return _validate_event(data, adapter=_CLIENT_EVENT_ADAPTER, members=_CLIENT_EVENT_TYPES)


_SESSION_OBJECT_EXTRAS = {"session": frozenset({"id", "object", "expires_at"})}


def validate_server_event(data: dict[str, Any]) -> str | None:
    """Validate an event the fake is about to send; returns a failure description or None."""
    _, err = _validate_event(
        data,
        adapter=_SERVER_EVENT_ADAPTER,
        members=_SERVER_EVENT_TYPES,
        allowed_extra=_SESSION_OBJECT_EXTRAS,
    )
    if err is not None:
        return f"server event {data.get('type')!r}: {err.message}"
    session = data.get("session")
    if isinstance(session, dict) and session.get("type") == "transcription":
        try:
            obj = _TRANSCRIPTION_SESSION_ADAPTER.validate_python(session)
        except ValidationError as exc:
            return f"server event {data.get('type')!r} session: {_pick_error(exc).message}"
        unknown = _find_unknown_field(obj, "session")
        if unknown:
            return f"server event {data.get('type')!r}: unknown field {unknown!r}"
    return None


def _validate_plain(adapter: TypeAdapter[Any], data: object, what: str) -> str | None:
    try:
        obj = adapter.validate_python(data)
    except ValidationError as exc:
        return f"{what}: {_pick_error(exc).message}"
    unknown = _find_unknown_field(obj, "")
    return f"{what}: unknown field {unknown!r}" if unknown else None


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class RealtimeSessionRecord:
    """Everything observed on one Realtime WebSocket connection, appended in order.

    ``headers`` has lower-cased names. ``audio`` is all appended audio as 24 kHz s16le mono
    (G.711 appends are decoded and resampled one append at a time); ``commits`` holds the audio
    of each committed buffer (24 kHz s16le), ``item_ids`` the matching item ids, ``transcripts``
    each completed transcript. ``session_config`` is the ``session`` of the last
    ``session.update`` that passed schema validation (as sent, even if a model rule then
    rejected it); ``effective_session`` is the session object the fake last reported
    (``session.created``/``session.updated``). ``server_events`` are the events sent (with
    ``event_id``), ``errors_sent`` the ``error`` objects among them. ``close_code`` is the
    WebSocket close code (1006 when the fake dropped the socket). ``closed`` is set once the
    connection is over. Timestamps are ``time.monotonic()`` seconds: ``commit_times`` (each
    commit received) and ``completed_times`` (each ``...completed`` sent) run parallel to
    ``commits`` and ``transcripts``, ``server_event_times`` (each event sent) to
    ``server_events``.

    Conversation (speech) sessions also record ``spoken`` (the text each response spoke, in
    order), ``cancelled_responses`` (ids of responses a ``response.cancel`` stopped) and
    ``deleted_items`` (ids of items ``conversation.item.delete`` removed).
    """

    query: dict[str, str]
    headers: dict[str, str]
    connected_at: float
    client_events: list[dict[str, Any]] = field(default_factory=list)
    server_events: list[dict[str, Any]] = field(default_factory=list)
    server_event_times: list[float] = field(default_factory=list)
    session_config: dict[str, Any] | None = None
    effective_session: dict[str, Any] | None = None
    audio: bytearray = field(default_factory=bytearray)
    commits: list[bytes] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    errors_sent: list[dict[str, Any]] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    cancelled_responses: list[str] = field(default_factory=list)
    deleted_items: list[str] = field(default_factory=list)
    append_count: int = 0
    first_audio_at: float | None = None
    commit_times: list[float] = field(default_factory=list)
    completed_times: list[float] = field(default_factory=list)
    closed_at: float | None = None
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def events_of_type(self, event_type: str) -> list[dict[str, Any]]:
        """Server events of ``event_type`` sent so far, in order."""
        return [e for e in self.server_events if e.get("type") == event_type]


@dataclass
class SpeechStreamRecord:
    """One ``/v1/audio/speech`` response body as streamed (times are ``time.monotonic()``)."""

    request: dict[str, Any]
    started_at: float
    total_bytes: int = 0
    bytes_sent: int = 0
    first_byte_at: float | None = None
    finished_at: float | None = None
    completed: bool = False
    aborted: bool = False


@dataclass
class _TranscriptionJob:
    item_id: str
    pcm: bytes
    model: str | None
    language: str | None
    prompt: str | None


@dataclass(eq=False)
class _RealtimeConnection:
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


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeOpenAI:
    """A fake OpenAI API server for tests (see the module docstring).

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

    # ---------------------------------------------------------------- HTTP plumbing

    @staticmethod
    async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
        if response.status != 101:
            response.headers.setdefault("x-request-id", _new_id("req_", 32))

    @staticmethod
    def _error_response(
        status: int, err: _ApiError, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response({"error": err.body()}, status=status, headers=headers)

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

    # ---------------------------------------------------------------- Realtime

    async def _handle_realtime(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            timeout=_WS_CLOSE_TIMEOUT, max_msg_size=32 * 1024 * 1024, autoping=True
        )
        if not ws.can_prepare(request).ok:
            return self._error_response(
                400, _ApiError(None, "Expected a WebSocket upgrade request.")
            )
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
            return
        beta = conn.request.headers.get("OpenAI-Beta", "")
        if "realtime=v1" in beta.replace(" ", ""):
            self.validation_failures.append(f"beta header OpenAI-Beta: {beta}")
            await self._beta_shape_disabled(conn)
            return
        if query.get("intent") != "transcription":
            await self._handle_conversation_session(conn)
            return
        if "model" in query:
            await self._send_error(
                conn,
                _ApiError(
                    "invalid_request_error",
                    "The 'model' query parameter is not allowed for transcription sessions "
                    "(intent=transcription); set the transcription model with session.update.",
                    "model",
                ),
            )
            await self._close(conn, 1008, "invalid query")
            return

        expires_at = self._expires_at()
        conn.config = {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": _new_id("sess_"),
            "expires_at": expires_at,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": REALTIME_RATE},
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 500,
                    },
                }
            },
            "include": None,
        }
        conn.record.effective_session = copy.deepcopy(conn.config)
        await self._send(conn, {"type": "session.created", "session": conn.config})
        self._spawn(self._transcription_worker(conn), conn)
        self._spawn(self._expire_session(conn, self.session_max_duration), conn)

        await self._read_client_events(conn)

    async def _handle_conversation_session(self, conn: _RealtimeConnection) -> None:
        """Conversation (speech) sessions need ``?model=...`` (else: error, then close 1008)."""
        model = conn.record.query.get("model")
        if model:
            await self._run_conversation(conn, model)
            return
        err = _ApiError(
            "missing_required_parameter",
            "Missing required parameter: 'model'. Pass ?model=... for a conversation session "
            "or ?intent=transcription for a transcription session.",
            "model",
        )
        await self._send_error(conn, err)
        await self._close(conn, 1008, "unsupported session")

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
        if isinstance(data, dict) and self._is_beta_event(data):
            self.validation_failures.append(f"beta client event {data.get('type')!r}")
            await self._beta_shape_disabled(conn)
            return
        _model, err = validate_client_event(data)
        if err is not None:
            await self._reject_event(conn, err, data)
            return
        event_type = data["type"]
        event_id = data.get("event_id")
        if conn.config.get("type") == "realtime":
            await self._on_conversation_event(conn, data, event_id)
            return
        if event_type == "session.update":
            await self._on_session_update(conn, data, event_id)
        elif event_type == "input_audio_buffer.append":
            await self._on_append(conn, data, event_id)
        elif event_type == "input_audio_buffer.commit":
            await self._on_commit(conn, event_id)
        elif event_type == "input_audio_buffer.clear":
            conn.buffer.clear()
            await self._send(conn, {"type": "input_audio_buffer.cleared"})
        else:
            await self._reject_event(
                conn,
                _ApiError(
                    "invalid_value",
                    f"Event type '{event_type}' is not supported in transcription sessions.",
                    "type",
                ),
                data,
                record=False,
            )

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

    async def _on_session_update(
        self, conn: _RealtimeConnection, data: dict[str, Any], event_id: str | None
    ) -> None:
        update = data["session"]
        conn.record.session_config = copy.deepcopy(update)
        if update.get("type") != "transcription":
            err = _ApiError(
                "invalid_value",
                f"Invalid value: {update.get('type')!r}. This is a transcription session "
                "(intent=transcription): session.type must be 'transcription'.",
                "session.type",
            )
            await self._send_error(conn, err, event_id)
            return
        candidate = copy.deepcopy(conn.config)
        if "include" in update:
            candidate["include"] = copy.deepcopy(update["include"])
        audio = update.get("audio")
        if isinstance(audio, dict) and isinstance(audio.get("input"), dict):
            target = candidate.setdefault("audio", {}).setdefault("input", {})
            for key, value in audio["input"].items():
                target[key] = copy.deepcopy(value)
        rule_error = self._check_session(candidate)
        transcription = candidate.get("audio", {}).get("input", {}).get("transcription") or {}
        if rule_error is None and transcription.get("model") in self.retired_models:
            rule_error = self._retired_error(
                transcription["model"], "session.audio.input.transcription.model"
            )
        if rule_error is not None:
            await self._send_error(conn, rule_error, event_id)
            return
        conn.config = candidate
        conn.record.effective_session = copy.deepcopy(candidate)
        await self._send(conn, {"type": "session.updated", "session": candidate})

    @staticmethod
    def _check_session(session: dict[str, Any]) -> _ApiError | None:
        """Apply the service's rules to an effective transcription session (see notes)."""
        inp = session.get("audio", {}).get("input", {})
        prefix = "session.audio.input"
        fmt = inp.get("format")
        if fmt is None:
            inp["format"] = {"type": "audio/pcm", "rate": REALTIME_RATE}
        elif fmt.get("type") is None:
            return _ApiError(
                "missing_required_parameter",
                f"Missing required parameter: '{prefix}.format.type'.",
                f"{prefix}.format.type",
            )
        elif fmt["type"] == "audio/pcm":
            fmt.setdefault("rate", REALTIME_RATE)
        transcription = inp.get("transcription")
        turn_detection = inp.get("turn_detection")
        if transcription is None:
            return None
        tp = f"{prefix}.transcription"
        model = transcription.get("model")
        if not model:
            return _ApiError(
                "missing_required_parameter",
                f"Missing required parameter: '{tp}.model'.",
                f"{tp}.model",
            )
        if model == "retired-model" or model.startswith("missing-"):
            return _ApiError(
                "model_not_found",
                f"The model `{model}` does not exist or you do not have access to it.",
                f"{tp}.model",
            )

        def unsupported(name: str, hint: str = "") -> _ApiError:
            return _ApiError(
                "unsupported_parameter",
                f"Unsupported parameter: '{tp}.{name}' is not supported with model "
                f"'{model}'.{hint}",
                f"{tp}.{name}",
            )

        if model in _MULTI_LANGUAGE_MODELS:
            if transcription.get("language") is not None:
                return unsupported("language", " Use 'languages' instead.")
        else:
            for name in ("languages", "keywords"):
                if transcription.get(name) is not None:
                    return unsupported(name)
        if model != "gpt-realtime-whisper" and transcription.get("delay") is not None:
            return unsupported("delay")
        if model == "gpt-realtime-whisper" and transcription.get("prompt") is not None:
            return unsupported("prompt")
        if model in _NO_VAD_MODELS and turn_detection is not None:
            return _ApiError(
                "invalid_value",
                "Turn detection is not supported for this transcription model",
                f"{prefix}.turn_detection",
            )
        return None

    async def _on_append(
        self, conn: _RealtimeConnection, data: dict[str, Any], event_id: str | None
    ) -> None:
        try:
            chunk = base64.b64decode(data["audio"], validate=True)
        except (binascii.Error, ValueError):
            await self._reject_event(
                conn,
                _ApiError(
                    "invalid_value", "Invalid 'audio': expected base64-encoded audio.", "audio"
                ),
                data,
            )
            return
        if len(chunk) > _MAX_APPEND_BYTES:
            await self._reject_event(
                conn,
                _ApiError(
                    "invalid_value",
                    f"Invalid 'audio': {len(chunk)} bytes exceed the maximum of "
                    f"{_MAX_APPEND_BYTES} bytes per append.",
                    "audio",
                ),
                data,
            )
            return
        record = conn.record
        if conn.format_type == "audio/pcm" and len(chunk) % 2 and self.strict_sample_alignment:
            self.validation_failures.append(
                f"input_audio_buffer.append #{record.append_count + 1}: {len(chunk)} bytes is "
                "not a whole number of 16-bit samples"
            )
        if record.first_audio_at is None:
            record.first_audio_at = time.monotonic()
        conn.buffer += chunk
        record.audio += _wire_to_pcm24k(chunk, conn.format_type)
        record.append_count += 1
        if record.commits:
            conn.appends_after_commit += 1
        limit = self.drop_after_appends
        after_commit = self.drop_after_commit_appends
        if (limit is not None and record.append_count >= limit) or (
            after_commit is not None and conn.appends_after_commit >= max(1, after_commit)
        ):
            conn.dropped = True
            conn.gone = True
            transport = conn.request.transport
            if transport is not None:
                transport.abort()

    async def _on_commit(self, conn: _RealtimeConnection, event_id: str | None) -> None:
        have_ms = len(conn.buffer) / conn.bytes_per_ms
        if have_ms < _MIN_COMMIT_MS:
            await self._send_error(
                conn,
                _ApiError(
                    "input_audio_buffer_commit_empty",
                    "Error committing input audio buffer: buffer too small. Expected at least "
                    f"100ms of audio, but buffer only has {have_ms:.2f}ms of audio.",
                ),
                event_id,
            )
            return
        pcm = _wire_to_pcm24k(bytes(conn.buffer), conn.format_type)
        conn.buffer.clear()
        item_id = _new_id("item_")
        previous, conn.last_item_id = conn.last_item_id, item_id
        conn.record.commits.append(pcm)
        conn.record.commit_times.append(time.monotonic())
        conn.record.item_ids.append(item_id)
        await self._send(
            conn,
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            },
        )
        transcription = conn.config.get("audio", {}).get("input", {}).get("transcription")
        if transcription is None:
            return  # transcription is off by default on the service
        language = transcription.get("language") or next(
            iter(transcription.get("languages") or []), None
        )
        prompt = transcription.get("prompt") or (
            ", ".join(transcription["keywords"]) if transcription.get("keywords") else None
        )
        conn.queue.put_nowait(
            _TranscriptionJob(item_id, pcm, transcription.get("model"), language, prompt)
        )

    async def _transcription_worker(self, conn: _RealtimeConnection) -> None:
        """Transcribe committed items one after the other (so their events stay in order)."""
        while not conn.gone:
            job = await conn.queue.get()
            if self.finalize_delay > 0:
                await asyncio.sleep(self.finalize_delay)
            transcriber = self.transcriber or default_transcriber
            try:
                text = await asyncio.to_thread(transcriber, job.pcm, job.language, job.prompt)
            except Exception as exc:
                await self._send(
                    conn,
                    {
                        "type": "conversation.item.input_audio_transcription.failed",
                        "item_id": job.item_id,
                        "content_index": 0,
                        "error": {
                            "type": "server_error",
                            "code": "transcription_failed",
                            "message": f"Transcription failed: {exc}",
                            "param": None,
                        },
                    },
                )
                continue
            for delta in split_deltas(text):
                if not await self._send(
                    conn,
                    {
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": job.item_id,
                        "content_index": 0,
                        "delta": delta,
                    },
                ):
                    return
            conn.record.transcripts.append(text)
            conn.record.completed_times.append(time.monotonic())
            await self._send(
                conn,
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": job.item_id,
                    "content_index": 0,
                    "transcript": text,
                    "usage": _usage(job.model, job.pcm, job.prompt, text),
                },
            )

    # ---------------------------------------------------------------- Realtime conversation

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

    def _default_conversation_session(self, model: str) -> dict[str, Any]:
        """The session a conversation starts with (what ``session.created`` reports)."""
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": _new_id("sess_"),
            "expires_at": self._expires_at(),
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "You are a helpful, witty, and friendly AI.",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": REALTIME_RATE},
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 200,
                        "create_response": True,
                        "interrupt_response": True,
                    },
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": REALTIME_RATE},
                    "voice": "marin",
                    "speed": 1.0,
                },
            },
        }

    async def _run_conversation(self, conn: _RealtimeConnection, model: str) -> None:
        """A conversation (speech) session: ``session.created``, then client events."""
        if model in self.retired_models or model == "retired-model" or model.startswith("missing-"):
            err = (
                self._retired_error(model)
                if model in self.retired_models
                else _ApiError(
                    "model_not_found",
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "model",
                )
            )
            await self._send_error(conn, err)
            await self._close(conn, 1008, "model not found")
            return
        conn.config = self._default_conversation_session(model)
        conn.record.effective_session = copy.deepcopy(conn.config)
        await self._send(conn, {"type": "session.created", "session": conn.config})
        self._spawn(self._expire_session(conn, self.session_max_duration), conn)
        await self._read_client_events(conn)

    async def _on_conversation_event(
        self, conn: _RealtimeConnection, data: dict[str, Any], event_id: str | None
    ) -> None:
        """One validated client event of a conversation session."""
        event_type = data["type"]
        if event_type == "session.update":
            await self._on_conversation_update(conn, data, event_id)
        elif event_type == "conversation.item.create":
            await self._on_item_create(conn, data, event_id)
        elif event_type == "conversation.item.delete":
            item_id = data["item_id"]
            if conn.items.pop(item_id, None) is None:
                await self._send_error(
                    conn,
                    _ApiError(
                        "item_not_found", f"Item with item_id '{item_id}' not found.", "item_id"
                    ),
                    event_id,
                )
                return
            conn.record.deleted_items.append(item_id)
            await self._send(conn, {"type": "conversation.item.deleted", "item_id": item_id})
        elif event_type == "response.create":
            await self._on_response_create(conn, data, event_id)
        elif event_type == "response.cancel":
            wanted = data.get("response_id")
            active = conn.response_id
            if active is None or (wanted is not None and wanted != active):
                await self._send_error(
                    conn,
                    _ApiError(
                        "response_cancel_not_active",
                        "Cancellation failed: no active response found.",
                    ),
                    event_id,
                )
                return
            conn.record.cancelled_responses.append(active)
            conn.response_cancel.set()
        else:
            self.validation_failures.append(
                f"conversation event {event_type!r} is not implemented by FakeOpenAI"
            )
            await self._send_error(
                conn,
                _ApiError(
                    "invalid_value",
                    f"FakeOpenAI does not implement '{event_type}' in conversation sessions.",
                    "type",
                ),
                event_id,
            )

    async def _on_conversation_update(
        self, conn: _RealtimeConnection, data: dict[str, Any], event_id: str | None
    ) -> None:
        update = data["session"]
        conn.record.session_config = copy.deepcopy(update)
        if update.get("type") != "realtime":
            await self._send_error(
                conn,
                _ApiError(
                    "invalid_value",
                    f"Invalid value: {update.get('type')!r}. This is a conversation session "
                    "(?model=...): session.type must be 'realtime'.",
                    "session.type",
                ),
                event_id,
            )
            return
        candidate = copy.deepcopy(conn.config)
        for key, value in update.items():
            if key != "audio":
                candidate[key] = copy.deepcopy(value)
        for direction in ("input", "output"):
            part = (update.get("audio") or {}).get(direction)
            if isinstance(part, dict):
                target = candidate.setdefault("audio", {}).setdefault(direction, {})
                for key, value in part.items():
                    target[key] = copy.deepcopy(value)
        rule_error = self._check_conversation(conn, candidate)
        if rule_error is not None:
            await self._send_error(conn, rule_error, event_id)
            return
        conn.config = candidate
        conn.record.effective_session = copy.deepcopy(candidate)
        await self._send(conn, {"type": "session.updated", "session": candidate})

    @staticmethod
    def _check_conversation(conn: _RealtimeConnection, session: dict[str, Any]) -> _ApiError | None:
        """The service's rules for a conversation session (see the SDK docstrings of
        ``RealtimeSessionCreateRequest`` and ``RealtimeAudioConfigOutput``)."""
        modalities = session.get("output_modalities")
        if modalities is not None and modalities not in (["audio"], ["text"]):
            return _ApiError(
                "invalid_value",
                f"Invalid value: {modalities!r}. 'output_modalities' must be ['audio'] or "
                "['text'].",
                "session.output_modalities",
            )
        output = session.get("audio", {}).get("output", {})
        voice = output.get("voice")
        voice_ok = (isinstance(voice, str) and voice in REALTIME_VOICES) or (
            isinstance(voice, dict) and str(voice.get("id", "")).startswith("voice_")
        )
        if not voice_ok:
            supported = ", ".join(f"'{v}'" for v in REALTIME_VOICES)
            return _ApiError(
                "invalid_value",
                f"Invalid value: {voice!r}. Supported values are: {supported}, or an object "
                "{'id': 'voice_...'}.",
                "session.audio.output.voice",
            )
        current = conn.config.get("audio", {}).get("output", {}).get("voice")
        if conn.voice_locked and voice != current:
            return _ApiError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                "session.audio.output.voice",
            )
        speed = output.get("speed", 1.0)
        if not 0.25 <= speed <= 1.5:
            return _ApiError(
                "invalid_value",
                f"Invalid 'session.audio.output.speed': {speed}. Expected a value between "
                "0.25 and 1.5.",
                "session.audio.output.speed",
            )
        return None

    async def _on_item_create(
        self, conn: _RealtimeConnection, data: dict[str, Any], event_id: str | None
    ) -> None:
        item = copy.deepcopy(data["item"])
        if item.get("type") != "message":
            self.validation_failures.append(f"conversation item type {item.get('type')!r}")
            await self._send_error(
                conn,
                _ApiError("invalid_value", "FakeOpenAI only implements message items.", "item"),
                event_id,
            )
            return
        item_id = item.get("id") or _new_id("item_")
        if item_id in conn.items:
            await self._send_error(
                conn,
                _ApiError("invalid_value", f"Item with id '{item_id}' already exists.", "item.id"),
                event_id,
            )
            return
        item.update(id=item_id, object="realtime.item", status="completed")
        previous = next(reversed(conn.items), None) if conn.items else None
        conn.items[item_id] = item
        await self._send(
            conn, {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        await self._send(
            conn, {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )

    async def _on_response_create(
        self, conn: _RealtimeConnection, data: dict[str, Any], event_id: str | None
    ) -> None:
        if conn.response_id is not None:
            await self._send_error(
                conn,
                _ApiError(
                    "conversation_already_has_active_response",
                    f"Conversation already has an active response in progress: "
                    f"{conn.response_id}. Wait until the response is finished before creating "
                    "a new one.",
                ),
                event_id,
            )
            return
        if self.realtime_errors:
            code = self.realtime_errors.pop(0)
            kind = "server_error" if code == "server_error" else "invalid_request_error"
            message = (
                "The server had an error while processing your request. Sorry about that!"
                if kind == "server_error"
                else f"Injected error {code}."
            )
            await self._send_error(conn, _ApiError(code, message, None, kind), event_id)
            return
        text = ""
        for item in reversed(conn.items.values()):
            if item.get("role") == "user":
                text = " ".join(
                    part.get("text") or ""
                    for part in item.get("content", [])
                    if part.get("type") == "input_text"
                )
                break
        output = conn.config["audio"]["output"]
        voice = output["voice"] if isinstance(output["voice"], str) else output["voice"]["id"]
        conn.response_id = _new_id("resp_")
        conn.response_cancel = asyncio.Event()
        self._spawn(self._respond(conn, conn.response_id, text, voice), conn)

    async def _respond(
        self, conn: _RealtimeConnection, response_id: str, text: str, voice: str
    ) -> None:
        """Speak ``text`` (or what :attr:`realtime_says` makes of it) as one response."""
        started = time.monotonic()
        try:
            spoken = self.realtime_says(text) if self.realtime_says else text
            conn.record.spoken.append(spoken)
            fmt = {"type": "audio/pcm", "rate": REALTIME_RATE}
            item_id = _new_id("item_")
            item: dict[str, Any] = {
                "id": item_id,
                "object": "realtime.item",
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            response: dict[str, Any] = {
                "id": response_id,
                "object": "realtime.response",
                "status": "in_progress",
                "status_details": None,
                "output": [],
                "conversation_id": "conv_" + conn.config["id"][5:],
                "output_modalities": ["audio"],
                "max_output_tokens": "inf",
                "audio": {"output": {"format": fmt, "voice": voice}},
                "usage": None,
                "metadata": None,
            }
            where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
            previous = next(reversed(conn.items), None) if conn.items else None
            for event in (
                {"type": "response.created", "response": response},
                {"type": "response.output_item.added", "response_id": response_id,
                 "output_index": 0, "item": item},
                {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
                {"type": "response.content_part.added", **where, "content_index": 0,
                 "part": {"type": "audio", "transcript": ""}},
            ):  # fmt: skip
                if not await self._send(conn, event):
                    return
            synthesizer = self.synthesizer or default_synthesizer
            pcm = await asyncio.to_thread(synthesizer, spoken, voice) if spoken.strip() else b""
            pcm = pcm[: len(pcm) - len(pcm) % 2]
            remaining = self.tts_first_byte_delay - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.sleep(remaining)
            deltas = split_deltas(spoken)
            size = max(2, self.realtime_delta_bytes - self.realtime_delta_bytes % 2)
            said: list[str] = []
            for index, offset in enumerate(range(0, len(pcm), size)):
                if offset and self.tts_chunk_interval > 0:
                    await asyncio.sleep(self.tts_chunk_interval)
                if conn.response_cancel.is_set():
                    break
                chunk = base64.b64encode(pcm[offset : offset + size]).decode("ascii")
                if not await self._send(
                    conn,
                    {"type": "response.output_audio.delta", **where, "content_index": 0,
                     "delta": chunk},
                ):  # fmt: skip
                    return
                conn.voice_locked = True
                if index < len(deltas):
                    said.append(deltas[index])
                    await self._send(
                        conn,
                        {"type": "response.output_audio_transcript.delta", **where,
                         "content_index": 0, "delta": deltas[index]},
                    )  # fmt: skip
                if index == 0 and self.realtime_hold is not None:
                    await self.realtime_hold.wait()
            cancelled = conn.response_cancel.is_set()
            if not cancelled:
                for delta in deltas[len(said) :]:
                    said.append(delta)
                    await self._send(
                        conn,
                        {"type": "response.output_audio_transcript.delta", **where,
                         "content_index": 0, "delta": delta},
                    )  # fmt: skip
                for event in (
                    {"type": "response.output_audio_transcript.done", **where,
                     "content_index": 0, "transcript": spoken},
                    {"type": "response.output_audio.done", **where, "content_index": 0},
                ):  # fmt: skip
                    await self._send(conn, event)
            transcript = "".join(said)
            await self._send(
                conn,
                {"type": "response.content_part.done", **where, "content_index": 0,
                 "part": {"type": "audio", "transcript": transcript}},
            )  # fmt: skip
            item = {
                **item,
                "status": "incomplete" if cancelled else "completed",
                "content": [{"type": "output_audio", "transcript": transcript}],
            }
            conn.items[item_id] = item
            await self._send(
                conn,
                {"type": "response.output_item.done", "response_id": response_id,
                 "output_index": 0, "item": item},
            )  # fmt: skip
            await self._send(
                conn, {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
            )
            output_tokens = max(1, math.ceil(len(pcm) / (REALTIME_RATE * 2) * 10))
            input_tokens = len(text.split()) + 40
            response = {
                **response,
                "status": "cancelled" if cancelled else "completed",
                "status_details": (
                    {"type": "cancelled", "reason": "client_cancelled"} if cancelled else None
                ),
                "output": [item],
                "usage": {
                    "total_tokens": input_tokens + output_tokens,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0},
                    "output_token_details": {"text_tokens": 0, "audio_tokens": output_tokens},
                },
            }
            await self._send(conn, {"type": "response.done", "response": response})
        finally:
            if conn.response_id == response_id:
                conn.response_id = None

    # ---------------------------------------------------------------- /v1/audio/speech

    async def _handle_speech(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return self._error_response(
                400,
                _ApiError(
                    None,
                    "We could not parse the JSON body of your request. (HINT: This likely means "
                    "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                    "payload, but what was sent was not valid JSON.)",
                ),
            )
        self.speech_requests.append(body)
        if isinstance(body, dict) and body.get("model") in self.retired_models:
            return self._error_response(404, self._retired_error(str(body["model"])))
        err, status = self._check_speech(body)
        if err is not None:
            if status == 400:  # a malformed request (not e.g. an unknown model)
                self.validation_failures.append(f"/v1/audio/speech: {err.message}")
            return self._error_response(status, err)
        if body.get("response_format", "mp3") != "pcm" or body.get("stream_format", "audio") != (
            "audio"
        ):
            self.validation_failures.append("/v1/audio/speech: only pcm/audio is implemented")
            return self._error_response(
                400,
                _ApiError(
                    "unsupported_value",
                    "FakeOpenAI only produces response_format 'pcm' with stream_format 'audio'.",
                    "response_format",
                ),
            )
        voice = body["voice"] if isinstance(body["voice"], str) else body["voice"]["id"]
        started = time.monotonic()
        record = SpeechStreamRecord(request=body, started_at=started)
        self.speech_streams.append(record)  # at arrival, with its request: tests wait on these
        synthesizer = self.synthesizer or default_synthesizer
        try:
            audio = await asyncio.to_thread(synthesizer, body["input"], voice)
        except Exception as exc:
            record.aborted = True
            record.finished_at = time.monotonic()
            return self._error_response(
                500, _ApiError(None, f"Synthesis failed: {exc}", None, "server_error")
            )
        record.total_bytes = len(audio)
        remaining = self.tts_first_byte_delay - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
        if self.speech_hold is not None:
            await self.speech_hold.wait()
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/octet-stream"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        size = max(1, self.tts_chunk_bytes)
        try:
            for offset in range(0, len(audio), size):
                if offset and self.tts_chunk_interval > 0:
                    await asyncio.sleep(self.tts_chunk_interval)
                chunk = audio[offset : offset + size]
                await response.write(chunk)
                if record.first_byte_at is None:
                    record.first_byte_at = time.monotonic()
                record.bytes_sent += len(chunk)
                limit = self.speech_fail_after_bytes
                if limit is not None and record.bytes_sent >= limit and request.transport:
                    record.aborted = True
                    request.transport.abort()  # the body stops half-way, no final chunk
                    return response
                if not offset and self.speech_pause is not None:
                    await self.speech_pause.wait()
            await response.write_eof()
            record.completed = True
        except (ConnectionError, RuntimeError):
            record.aborted = True
        except asyncio.CancelledError:
            record.aborted = True
            raise
        finally:
            record.finished_at = time.monotonic()
        return response

    @staticmethod
    def _check_speech(body: object) -> tuple[_ApiError | None, int]:
        """Validate a ``/v1/audio/speech`` body; returns ``(error, http_status)``."""
        if not isinstance(body, dict):
            return _ApiError(None, "Invalid request body: expected a JSON object."), 400
        allowed = {"model", "input", "voice", "instructions", "response_format", "speed"}
        allowed.add("stream_format")
        for key in body:
            if key not in allowed:
                return _ApiError(None, f"Unrecognized request argument supplied: {key}"), 400
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _ApiError(None, "you must provide a model parameter"), 400
        if model == "retired-model" or model.startswith("missing-"):
            return (
                _ApiError(
                    "model_not_found",
                    f"The model `{model}` does not exist or you do not have access to it.",
                ),
                404,
            )
        text = body.get("input")
        if text is None:
            return _ApiError(
                "missing_required_parameter", "Missing required parameter: 'input'.", "input"
            ), 400
        for name in ("input", "instructions"):
            value = body.get(name)
            if value is None and name == "instructions":
                continue
            if not isinstance(value, str):
                return _ApiError(
                    "invalid_type", f"Invalid type for '{name}': expected a string.", name
                ), 400
            if len(value) > _MAX_TEXT_CHARS:
                return _ApiError(
                    "string_above_max_length",
                    f"Invalid '{name}': string too long. Expected a string with maximum length "
                    f"{_MAX_TEXT_CHARS}, but got a string with length {len(value)} instead.",
                    name,
                ), 400
        if not text:
            return _ApiError(
                "string_below_min_length",
                "Invalid 'input': string too short. Expected a string with minimum length 1, "
                "but got an empty string instead.",
                "input",
            ), 400
        if body.get("instructions") is not None and model in _LEGACY_TTS_MODELS:
            return _ApiError(
                "unsupported_parameter",
                f"Unsupported parameter: 'instructions' is not supported with model '{model}'.",
                "instructions",
            ), 400
        voice = body.get("voice")
        if voice is None:
            return _ApiError(
                "missing_required_parameter", "Missing required parameter: 'voice'.", "voice"
            ), 400
        voice_ok = (isinstance(voice, str) and voice in TTS_VOICES) or (
            isinstance(voice, dict)
            and set(voice) == {"id"}
            and isinstance(voice["id"], str)
            and voice["id"].startswith("voice_")
        )
        if not voice_ok:
            supported = ", ".join(f"'{v}'" for v in sorted(TTS_VOICES))
            return _ApiError(
                "invalid_value",
                f"Invalid value: {voice!r}. Supported values are: {supported}, or an object "
                "{'id': 'voice_...'}.",
                "voice",
            ), 400
        fmt = body.get("response_format", "mp3")
        if fmt not in TTS_RESPONSE_FORMATS:
            return _ApiError(
                "invalid_value",
                f"Invalid value: {fmt!r}. Supported values are: "
                + ", ".join(f"'{f}'" for f in TTS_RESPONSE_FORMATS)
                + ".",
                "response_format",
            ), 400
        stream_format = body.get("stream_format", "audio")
        if stream_format not in ("audio", "sse"):
            return _ApiError(
                "invalid_value",
                f"Invalid value: {stream_format!r}. Supported values are: 'sse' and 'audio'.",
                "stream_format",
            ), 400
        if stream_format == "sse" and model in _LEGACY_TTS_MODELS:
            return _ApiError(
                "unsupported_value",
                f"stream_format 'sse' is not supported with model '{model}'.",
                "stream_format",
            ), 400
        speed = body.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, int | float):
            return _ApiError(
                "invalid_type", "Invalid type for 'speed': expected a number.", "speed"
            ), 400
        if speed < 0.25:
            return _ApiError(
                "decimal_below_min_value",
                f"Invalid 'speed': decimal below minimum value. Expected a value >= 0.25, but "
                f"got {speed} instead.",
                "speed",
            ), 400
        if speed > 4.0:
            return _ApiError(
                "decimal_above_max_value",
                f"Invalid 'speed': decimal above maximum value. Expected a value <= 4, but got "
                f"{speed} instead.",
                "speed",
            ), 400
        return None, 200

    # ---------------------------------------------------------------- /v1/audio/transcriptions

    async def _handle_transcriptions(self, request: web.Request) -> web.StreamResponse:
        response = await self._transcribe_request(request)
        if response.status == 400 and isinstance(response, web.Response) and response.text:
            error = json.loads(response.text)["error"]
            if error["code"] != "audio_too_short":  # a short clip is not a malformed request
                self.validation_failures.append(f"/v1/audio/transcriptions: {error['message']}")
        return response

    async def _transcribe_request(self, request: web.Request) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/form-data"):
            return self._error_response(
                400,
                _ApiError(
                    None,
                    "Invalid Content-Type header (expected multipart/form-data).",
                ),
            )
        form = await request.post()
        fields: dict[str, Any] = {}
        upload: web.FileField | None = None
        for key, value in form.items():
            if isinstance(value, web.FileField):
                if key == "file":
                    upload = value
                continue
            if key.endswith("[]"):
                fields.setdefault(key[:-2], []).append(value)
            else:
                fields[key] = value
        record: dict[str, Any] = dict(fields)
        self.transcription_requests.append(record)
        if upload is None:
            return self._error_response(
                400,
                _ApiError(
                    "missing_required_parameter", "Missing required parameter: 'file'.", "file"
                ),
            )
        data = upload.file.read()
        record.update(filename=upload.filename, content_type=upload.content_type)
        model = fields.get("model")
        if not model:
            return self._error_response(400, _ApiError(None, "you must provide a model parameter"))
        if model in self.retired_models:
            return self._error_response(404, self._retired_error(model))
        if model == "retired-model" or model.startswith("missing-"):
            return self._error_response(
                404,
                _ApiError(
                    "model_not_found",
                    f"The model `{model}` does not exist or you do not have access to it.",
                ),
            )
        if len(data) > _MAX_UPLOAD_BYTES:
            return self._error_response(
                413,
                _ApiError(
                    None,
                    f"Maximum content size limit ({_MAX_UPLOAD_BYTES}) exceeded ({len(data)} "
                    "bytes read)",
                    None,
                    "server_error",
                ),
            )
        for name in ("languages", "keywords"):
            if name in fields and model != "gpt-transcribe":
                return self._error_response(
                    400,
                    _ApiError(
                        "unsupported_parameter",
                        f"Unsupported parameter: '{name}' is not supported with model '{model}'.",
                        name,
                    ),
                )
        try:
            with wave.open(io.BytesIO(data), "rb") as wav:
                rate = wav.getframerate()
                channels = wav.getnchannels()
                width = wav.getsampwidth()
                frames = wav.readframes(wav.getnframes())
        except (wave.Error, EOFError):
            return self._error_response(
                400,
                _ApiError(
                    "invalid_value",
                    "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', "
                    "'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']",
                    "file",
                ),
            )
        record.update(audio=frames, rate=rate, channels=channels, sample_width=width)
        if width != 2:
            return self._error_response(
                400,
                _ApiError("invalid_value", "FakeOpenAI only decodes 16-bit PCM WAV files.", "file"),
            )
        samples = np.frombuffer(frames[: len(frames) - len(frames) % (2 * channels)], "<i2")
        if channels > 1:
            samples = samples.reshape(-1, channels).mean(axis=1).astype("<i2")
        if len(samples) < rate / 10:
            return self._error_response(
                400,
                _ApiError(
                    "audio_too_short",
                    "Audio file is too short. Minimum audio length is 0.1 seconds.",
                    "file",
                ),
            )
        pcm24k = _resample(samples.tobytes(), rate, REALTIME_RATE)
        response_format = fields.get("response_format", "json")
        if response_format not in ("json", "text"):
            return self._error_response(
                400,
                _ApiError(
                    "unsupported_value",
                    f"FakeOpenAI supports response_format 'json' and 'text', not "
                    f"{response_format!r}.",
                    "response_format",
                ),
            )
        languages = fields.get("languages")
        language = fields.get("language") or (languages[0] if languages else None)
        keywords = fields.get("keywords")
        prompt = fields.get("prompt") or (", ".join(keywords) if keywords else None)
        transcriber = self.transcriber or default_transcriber
        try:
            text = await asyncio.to_thread(transcriber, pcm24k, language, prompt)
        except Exception as exc:
            return self._error_response(
                500, _ApiError(None, f"Transcription failed: {exc}", None, "server_error")
            )
        usage = _usage(model, pcm24k, prompt, text)
        stream = str(fields.get("stream", "false")).lower() == "true"
        if stream and model != "whisper-1":  # whisper-1 ignores `stream`
            return await self._stream_transcript(request, text, usage)
        if response_format == "text":
            return web.Response(text=text, content_type="text/plain")
        payload = {"text": text, "usage": usage}
        failure = _validate_plain(_STT_RESPONSE_ADAPTER, payload, "transcription response")
        if failure:
            self.validation_failures.append(failure)
        return web.json_response(payload)

    async def _stream_transcript(
        self, request: web.Request, text: str, usage: dict[str, Any]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )
        await response.prepare(request)
        events: list[dict[str, Any]] = [
            {"type": "transcript.text.delta", "delta": d} for d in split_deltas(text)
        ]
        done: dict[str, Any] = {"type": "transcript.text.done", "text": text}
        if usage["type"] == "tokens":
            done["usage"] = usage
        events.append(done)
        try:
            for event in events:
                failure = _validate_plain(_STT_STREAM_EVENT_ADAPTER, event, "transcription event")
                if failure:
                    self.validation_failures.append(failure)
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return response
