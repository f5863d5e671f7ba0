"""The process's Prometheus metrics: every series is declared here, and every other module
counts with one call to a function of this module. The web face serves them at
``GET /metrics`` (:func:`exposition`).

Series (all prefixed ``wyoming_openai_``; ``face`` is ``wyoming``, ``websocket`` or
``http``, ``kind`` is ``stt`` or ``tts``):

- ``requests_total{face, kind, outcome}``: requests answered, by outcome: ``ok``,
  ``fallback`` (the local engines answered in OpenAI's place), or the
  :class:`~wyoming_openai.errors.ErrorCode` the client was sent. A Wyoming transcription or
  synthesis, one utterance of a live WebSocket session (or the error ending the session),
  one HTTP request.
- ``transcript_seconds{face}``: end of speech (Wyoming ``audio-stop``, or the end the
  server heard first; the end of an upload) to the transcript.
- ``first_audio_seconds{face}``: the text handed to the engines (a ``synthesize`` text, a
  stream's first sentence, an HTTP request's input) to the first audio sent.
- ``upstream_retries_total{kind}``: another attempt after a transient upstream failure.
- ``warm_session_renewals_total{kind}``: pooled realtime sessions replaced before the
  service's 60-minute limit.
- ``model_moves_total{kind, retired, successor}``: a configured model the service
  retired, replaced for the life of the process (``tts.mode: auto`` moving from the speech
  model to the realtime model included).
- ``upstream_sessions{kind}``: realtime WebSocket sessions open upstream now.
- ``process_*``: prometheus-client's process collector (memory, CPU, open fds; Linux).

Label values are bounded: the names above, error codes, and models from the settings or the
catalogue. Never a text, a transcript, audio, a voice or model a client sent, the API key or
the web token.

One registry for the process (:data:`REGISTRY`), not one per server: counting happens deep
in what every face shares (retries, warm-session pools, the realtime wire), and passing a
registry through every engine's constructor would buy nothing in production, where one
process serves one server. It is this module's own registry, not prometheus-client's
global one, so the exposition holds these series and the process collector's only. Tests
that run several servers in one process therefore assert on how a series changes across
their own requests, never on its absolute value.
"""

from __future__ import annotations

import time
import weakref
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from .errors import ErrorCode

Face = Literal["wyoming", "websocket", "http"]
"""The door a request came through."""
Kind = Literal["stt", "tts"]
"""Speech to text or text to speech."""

FACES: tuple[Face, ...] = ("wyoming", "websocket", "http")
KINDS: tuple[Kind, ...] = ("stt", "tts")

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
"""Histogram bounds, seconds: fine where a voice assistant feels the wait."""

REGISTRY = CollectorRegistry()
"""Every series of the process (see the module docstring)."""

ProcessCollector(registry=REGISTRY)

REQUESTS = Counter(
    "wyoming_openai_requests",
    "Requests answered, by face (wyoming, websocket, http), kind (stt, tts) and outcome "
    "(ok; fallback: the local engines answered for OpenAI; else the error code sent)",
    ["face", "kind", "outcome"],
    registry=REGISTRY,
)
TRANSCRIPT_SECONDS = Histogram(
    "wyoming_openai_transcript_seconds",
    "Seconds from the end of speech (audio-stop, or the end heard first; the end of an "
    "upload) to the transcript, by face",
    ["face"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
FIRST_AUDIO_SECONDS = Histogram(
    "wyoming_openai_first_audio_seconds",
    "Seconds from the text handed to the engines (the synthesize text, a stream's first "
    "sentence, an HTTP request) to the first audio sent, by face",
    ["face"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RETRIES = Counter(
    "wyoming_openai_upstream_retries",
    "Upstream attempts repeated after a transient failure (rate limit, 5xx, network, "
    "timeout), by kind",
    ["kind"],
    registry=REGISTRY,
)
RENEWALS = Counter(
    "wyoming_openai_warm_session_renewals",
    "Pooled realtime sessions replaced before the service's 60-minute limit, by kind",
    ["kind"],
    registry=REGISTRY,
)
MODEL_MOVES = Counter(
    "wyoming_openai_model_moves",
    "Configured models the service retired or did not know, replaced for the life of the "
    "process (tts.mode auto: speech model to realtime model), by kind",
    ["kind", "retired", "successor"],
    registry=REGISTRY,
)
HEDGES = Counter(
    "wyoming_openai_hedges",
    "Overdue OpenAI answers raced by the next option (a fresh session or request, or the "
    "local engines), by the path that was late (openai.hedge_floor / hedge_ceiling)",
    ["path"],
    registry=REGISTRY,
)
UPSTREAM_SESSIONS = Gauge(
    "wyoming_openai_upstream_sessions",
    "Realtime WebSocket sessions open upstream now (warm and pooled ones included), by kind",
    ["kind"],
    registry=REGISTRY,
)

for _face in FACES:
    TRANSCRIPT_SECONDS.labels(face=_face)
    FIRST_AUDIO_SECONDS.labels(face=_face)
    for _kind in KINDS:
        REQUESTS.labels(face=_face, kind=_kind, outcome="ok")
        REQUESTS.labels(face=_face, kind=_kind, outcome="fallback")
for _kind in KINDS:
    RETRIES.labels(kind=_kind)
    RENEWALS.labels(kind=_kind)
    UPSTREAM_SESSIONS.labels(kind=_kind)

_open_sessions: weakref.WeakKeyDictionary[object, Kind] = weakref.WeakKeyDictionary()
"""The upstream sessions counted open, so each is counted closed once however often it is
closed (weak: the registry never keeps a dropped connection alive)."""


def transcribed(face: Face, ended_at: float | None, fallback: bool = False) -> None:
    """A transcript was sent; ``ended_at`` (``time.monotonic()``) is when speech ended, if
    known; ``fallback``: the local engine made it (``TranscriptFinal.fallback``)."""
    REQUESTS.labels(face=face, kind="stt", outcome="fallback" if fallback else "ok").inc()
    if ended_at is not None:
        TRANSCRIPT_SECONDS.labels(face=face).observe(time.monotonic() - ended_at)


def first_audio(face: Face, asked_at: float | None) -> None:
    """The first audio of a synthesis was sent; ``asked_at`` (``time.monotonic()``) is when
    its text was handed to the engines (``SynthesisPipeline.started_at``)."""
    if asked_at is not None:
        FIRST_AUDIO_SECONDS.labels(face=face).observe(time.monotonic() - asked_at)


def spoke(face: Face, fallback: bool = False) -> None:
    """A synthesis was sent whole; ``fallback``: Piper spoke some of it
    (``SynthesisPipeline.fallback``)."""
    REQUESTS.labels(face=face, kind="tts", outcome="fallback" if fallback else "ok").inc()


def failed(face: Face, kind: Kind, code: ErrorCode) -> None:
    """A request ended with an error sent to the client (outcome: its ``code``)."""
    REQUESTS.labels(face=face, kind=kind, outcome=code.value).inc()


def retried(kind: Kind) -> None:
    """An upstream attempt is repeated after a transient failure."""
    RETRIES.labels(kind=kind).inc()


def renewed(kind: Kind) -> None:
    """A pooled realtime session is replaced before it expires."""
    RENEWALS.labels(kind=kind).inc()


def hedged(path: str) -> None:
    """An answer on ``path`` (one of the fixed names the engines time, e.g.
    ``"transcription finalize"``) was overdue and the next option started."""
    HEDGES.labels(path=path).inc()


def model_moved(kind: Kind, retired: str, successor: str) -> None:
    """The configured model ``retired`` is replaced by ``successor`` (both from the settings
    or the catalogue, never from a client)."""
    MODEL_MOVES.labels(kind=kind, retired=retired, successor=successor).inc()


def session_opened(kind: Kind, connection: object) -> None:
    """A realtime session (``connection``) is open upstream (idempotent)."""
    if connection not in _open_sessions:
        _open_sessions[connection] = kind
        UPSTREAM_SESSIONS.labels(kind=kind).inc()


def session_closed(connection: object) -> None:
    """``connection`` is closed (idempotent; a connection never counted open is ignored)."""
    kind = _open_sessions.pop(connection, None)
    if kind is not None:
        UPSTREAM_SESSIONS.labels(kind=kind).dec()


def exposition() -> tuple[bytes, str]:
    """Every series in the Prometheus text format, and its ``Content-Type``
    (prometheus-client's ``generate_latest`` and ``CONTENT_TYPE_LATEST``). Reads ``/proc``
    (the process collector): call it off the event loop."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
