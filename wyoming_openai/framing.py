"""Reading Wyoming events with limits, so a bad client cannot hurt the server.

Wire format (wyoming 1.10.2 ``wyoming/event.py``): one UTF-8
JSON header line ending in ``\\n`` (``type``, optional ``data``, ``data_length``,
``payload_length``), then ``data_length`` bytes of JSON data, then ``payload_length``
bytes of payload.

``wyoming.event.async_read_event`` trusts the lengths (a header claiming 10 GB makes it
wait for and buffer them), turns a bad header into a silent disconnect, and lets a
truncated payload escape as an exception. :func:`read_event` checks everything and says
what was wrong with a :class:`FrameError`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from wyoming.event import Event


class FrameError(Exception):
    """The bytes are not a valid Wyoming event; the stream cannot be trusted after it."""


@dataclass(frozen=True)
class FrameLimits:
    """Upper bounds for one event, in bytes (``limits.max_event_data_bytes`` and
    ``limits.max_payload_bytes``)."""

    max_data_bytes: int
    max_payload_bytes: int


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FrameError(f"{key} must be a non-negative integer")
    if value > limit:
        raise FrameError(f"{key} {value} exceeds the limit of {limit} bytes")
    return value


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise FrameError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise FrameError(f"{what} must be a JSON object")
    return value


async def read_event(reader: asyncio.StreamReader, limits: FrameLimits) -> Event | None:
    """Read one event.

    Returns:
        the event, or ``None`` when the client closed the connection (also mid-event:
        a truncated event is the client going away, not an attack worth an answer).

    Raises:
        FrameError: a header that is not a JSON object with a string ``type``, a header
            line longer than the stream's limit (64 KiB by default), bad or oversized
            ``data_length``/``payload_length``, or data that is not a JSON object.
    """
    try:
        line = await reader.readline()
    except ValueError:  # asyncio's LimitOverrunError, re-raised by readline
        raise FrameError("header line too long") from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        return None  # EOF in the middle of a header
    header = _json_object(line, "header")
    event_type = header.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise FrameError("header needs a string type")
    data_length = _length(header, "data_length", limits.max_data_bytes)
    payload_length = _length(header, "payload_length", limits.max_payload_bytes)
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise FrameError("data must be a JSON object")

    try:
        if data_length:
            data = {**data, **_json_object(await reader.readexactly(data_length), "data")}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None
    return Event(type=event_type, data=data, payload=payload)
