"""``POST /v1/audio/transcriptions``: multipart upload of a WAV file, JSON/text or SSE answer."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from typing import Any

import numpy as np
from aiohttp import web

from tests.speech import resample_pcm

from .base import _FakeOpenAIBase
from .common import (
    _MAX_UPLOAD_BYTES,
    REALTIME_RATE,
    _usage,
    default_transcriber,
    split_deltas,
)
from .validation import _STT_RESPONSE_ADAPTER, _STT_STREAM_EVENT_ADAPTER, _ApiError, _validate_plain


class _HttpTranscription(_FakeOpenAIBase):
    """``POST /v1/audio/transcriptions`` (see the module docstring)."""

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
        pcm24k = resample_pcm(samples.tobytes(), rate, REALTIME_RATE)
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
