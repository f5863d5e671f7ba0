"""Realtime conversation sessions (``GET /v1/realtime?model=...``), which speak.

``session.update`` (type ``realtime``), ``conversation.item.create`` / ``.delete``,
``response.create`` -> ``response.output_audio.delta`` / ``..._transcript.delta`` ... ->
``response.done``, and ``response.cancel`` (the synthesizer reads the last user message).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import math
import time
from typing import Any

from .common import REALTIME_RATE, _new_id, default_synthesizer, split_deltas
from .realtime import _RealtimeConnection, _RealtimeConnections
from .validation import _ApiError

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


class _RealtimeSpeech(_RealtimeConnections):
    """Conversation sessions (see the module docstring)."""

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
