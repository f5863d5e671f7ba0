"""``POST /v1/audio/speech``: a JSON request, raw 24 kHz PCM streamed back in chunks."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .base import _FakeOpenAIBase
from .common import default_synthesizer
from .records import SpeechStreamRecord
from .validation import _ApiError

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
_MAX_TEXT_CHARS = 4096


class _HttpSpeech(_FakeOpenAIBase):
    """``POST /v1/audio/speech`` (see the module docstring)."""

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
        if self.speech_stalls > 0:
            self.speech_stalls -= 1
            record.stalled = True
            await self._until_client_gone(request)
            record.aborted = True
            record.finished_at = time.monotonic()
            return web.Response(status=503)
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
