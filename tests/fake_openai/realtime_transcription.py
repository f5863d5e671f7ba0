"""Realtime transcription sessions (``GET /v1/realtime?intent=transcription``).

``session.update`` (type ``transcription``, with the service's model rules),
``input_audio_buffer.append`` / ``.commit`` / ``.clear``, and the transcription of each committed
item (``conversation.item.input_audio_transcription.delta`` ... ``.completed``), in commit order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import time
from typing import Any

import numpy as np

from tests.speech import resample_pcm

from .common import (
    _MIN_COMMIT_MS,
    REALTIME_RATE,
    _new_id,
    _usage,
    default_transcriber,
    split_deltas,
)
from .realtime import _RealtimeConnection, _RealtimeConnections, _TranscriptionJob
from .validation import _ApiError

_MAX_APPEND_BYTES = 15 * 1024 * 1024
_MULTI_LANGUAGE_MODELS = frozenset({"gpt-transcribe", "gpt-live-transcribe"})
_NO_VAD_MODELS = frozenset({"gpt-live-transcribe", "gpt-realtime-whisper"})


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
        return resample_pcm(_ulaw_to_pcm16(data), 8000, REALTIME_RATE)
    if fmt_type == "audio/pcma":
        return resample_pcm(_alaw_to_pcm16(data), 8000, REALTIME_RATE)
    return data


class _RealtimeTranscription(_RealtimeConnections):
    """Transcription sessions (see the module docstring)."""

    async def _run_transcription(self, conn: _RealtimeConnection) -> None:
        """A transcription session: ``session.created``, then client events (a ``?model=...``
        query is refused: error, then close 1008)."""
        query = conn.record.query
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

    async def _on_transcription_event(
        self, conn: _RealtimeConnection, data: dict[str, Any], event_id: str | None
    ) -> None:
        """One validated client event of a transcription session."""
        event_type = data["type"]
        if conn.record.stalled:
            return  # recorded, never answered
        if event_type == "input_audio_buffer.commit" and self.stall_after_commit > 0:
            self.stall_after_commit -= 1
            conn.record.stalled = True
            conn.record.commit_times.append(time.monotonic())
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
