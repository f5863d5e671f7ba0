"""Wire helpers shared by the realtime engines (transcription and speech).

Event names and shapes are those of the OpenAI Realtime API (API reference, "Realtime"
client and server events; ``openai.types.realtime`` in openai-python 3.52). Events are
read as JSON and the hottest one, ``input_audio_buffer.append``, is built as text: the
SDK's ``recv()`` validates each event into its type and ``send()`` transforms each one
through its type hints, which together cost more CPU than the rest of an utterance
(``benchmarks/README.md``, Realtime wire CPU).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from . import metrics, upstream

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

_LOGGER = logging.getLogger(__name__)

SESSION_LIFETIME = 3600.0
"""Seconds a realtime session lasts: the service ends it after 60 minutes with
``error.code = session_expired`` (used when ``session.created`` names no ``expires_at``)."""

COMMIT_EVENT = '{"type":"input_audio_buffer.commit"}'
COMMITTED = "input_audio_buffer.committed"
TRANSCRIPTION_DELTA = "conversation.item.input_audio_transcription.delta"
TRANSCRIPTION_COMPLETED = "conversation.item.input_audio_transcription.completed"
TRANSCRIPTION_FAILED = "conversation.item.input_audio_transcription.failed"


def append_event(pcm: bytes) -> str:
    """``input_audio_buffer.append`` for ``pcm`` (bytes in the session's input format) as
    JSON text (base64 has no characters JSON must escape)."""
    return '{"type":"input_audio_buffer.append","audio":"' + base64.b64encode(pcm).decode() + '"}'


async def recv_event(connection: AsyncRealtimeConnection) -> dict[str, Any]:
    """The next server event as a plain dict (``{}`` for a JSON value that is not an
    object).

    Raises:
        Exception: the WebSocket's errors (``upstream.from_exception`` classifies them).
    """
    event = json.loads(await connection.recv_bytes())
    return event if isinstance(event, dict) else {}


async def expect(connection: AsyncRealtimeConnection, event_type: str, what: str) -> dict[str, Any]:
    """Read events until one of ``event_type`` and return it; others are skipped.

    Raises:
        BridgeError: an ``error`` event came first (``upstream.from_realtime_error``).
        Exception: the WebSocket's errors.
    """
    while True:
        event = await recv_event(connection)
        if event.get("type") == event_type:
            return event
        if event.get("type") == "error":
            raise upstream.from_realtime_error(event.get("error"), what)
        _LOGGER.debug("Ignoring %s while waiting for %s", event.get("type"), event_type)


def expires_at(created: dict[str, Any]) -> float:
    """When the session of a ``session.created`` event expires (Unix time, seconds): its
    ``session.expires_at``, or :data:`SESSION_LIFETIME` from now when that is missing or
    past."""
    session = created.get("session")
    value = session.get("expires_at") if isinstance(session, dict) else None
    if not isinstance(value, int | float) or value <= time.time():
        return time.time() + SESSION_LIFETIME
    return float(value)


async def close_quietly(connection: AsyncRealtimeConnection) -> None:
    """Close the WebSocket; errors are ignored (the session is being dropped)."""
    metrics.session_closed(connection)
    with contextlib.suppress(Exception):
        await connection.close()
