"""What :class:`~tests.fake_openai.FakeOpenAI` records of Realtime sessions and speech bodies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


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
    ``server_events``, ``client_event_times`` (each client event received) to
    ``client_events``.

    Conversation (speech) sessions also record ``spoken`` (the text each response spoke, in
    order), ``cancelled_responses`` (ids of responses a ``response.cancel`` stopped) and
    ``deleted_items`` (ids of items ``conversation.item.delete`` removed).
    """

    query: dict[str, str]
    headers: dict[str, str]
    connected_at: float
    client_events: list[dict[str, Any]] = field(default_factory=list)
    client_event_times: list[float] = field(default_factory=list)
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
    stalled: bool = False
    """The session stopped answering at its first commit (``stall_after_commit``)."""

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
    stalled: bool = False
    """The request never got a byte (``speech_stalls``); ``aborted`` once the client left."""
