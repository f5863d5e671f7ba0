"""``POST /v1/audio/speech``: speech streamed as it is synthesized, through the TTS chain.

The request is OpenAI's (API reference, Audio > Create speech;
``openai.types.audio.speech_create_params``): JSON ``input``, ``voice``, ``model``
(accepted; the configured engine speaks), ``instructions``, ``speed`` (0.25 to 4.0),
``response_format`` (``mp3`` by default, ``opus``, ``aac``, ``flac``, ``wav``, ``pcm``:
24 kHz s16le mono, see :mod:`.encode`) and ``stream_format``:

- ``audio`` (the default): the file's bytes, chunked as the encoder makes them;
- ``sse``: server-sent events, ``speech.audio.delta {audio: base64 of those bytes}`` each,
  then ``speech.audio.done {usage: {input_tokens, output_tokens, total_tokens}}``
  (OpenAPI spec ``SpeechAudioDeltaEvent``, ``SpeechAudioDoneEvent``). This server meters
  no tokens: the usage is zeros.

The text goes through the same pipeline as Wyoming's (sentences synthesized ahead, the
local fallback), and the engine's audio is resampled to 24 kHz where it differs (Piper
alone speaks at its voice's rate). A failure before the first byte is an error response
with OpenAI's shape; after it, the connection is cut, so a client never takes a short
file for a whole one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from .. import metrics
from ..audio import PCM_24K_MONO
from ..catalogue import OPENAI_VOICES
from ..errors import BridgeError, ErrorCode
from ..resample import AudioConverter
from ..tts.base import SpeechOptions, TtsEngine, resolve_voice
from ..tts.pipeline import SynthesisPipeline
from ..tts.sentences import split_text
from .encode import RESPONSE_FORMATS, SpeechEncoder, content_type

_LOGGER = logging.getLogger(__name__)

SPEECH_FORMAT = PCM_24K_MONO
"""The PCM every response format is made from (``pcm`` is it: 24 kHz, 16-bit, mono)."""

STREAM_FORMATS = ("audio", "sse")
"""``stream_format`` values (OpenAI's)."""

MIN_SPEED, MAX_SPEED = 0.25, 4.0
"""``speed`` range (OpenAI's)."""

MAX_INSTRUCTIONS_CHARS = 4096
"""Longest ``instructions`` (OpenAI's limit)."""

NO_USAGE = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
"""``usage`` of ``speech.audio.done``: this server counts no tokens."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class SpeechRequest:
    """A valid speech request: ``text``, ``voice`` (None: the engine's default),
    ``response_format``, ``stream_format`` and the ``options`` given to the engine."""

    text: str
    voice: str | None = None
    response_format: str = "mp3"
    stream_format: str = "audio"
    options: SpeechOptions = field(default_factory=SpeechOptions)


def parse_request(body: Any, max_chars: int) -> SpeechRequest:
    """The :class:`SpeechRequest` of a JSON body (fields OpenAI does not define are
    ignored).

    Raises:
        BridgeError: ``bad-request`` (not an object, a mistyped field, a speed out of
            range), ``empty-text``, ``text-too-long`` (``input`` over ``max_chars``,
            ``instructions`` over :data:`MAX_INSTRUCTIONS_CHARS`), ``unsupported-format``
            (a ``response_format`` or ``stream_format`` OpenAI does not define).
    """
    if not isinstance(body, dict):
        raise BridgeError(ErrorCode.BAD_REQUEST, "the body must be a JSON object")
    text = body.get("input")
    if not isinstance(text, str):
        raise BridgeError(ErrorCode.BAD_REQUEST, "input must be a string")
    if not text.strip():
        raise BridgeError(ErrorCode.EMPTY_TEXT, "input is empty")
    if len(text) > max_chars:
        raise BridgeError(ErrorCode.TEXT_TOO_LONG, f"input longer than {max_chars} characters")
    voice = body.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise BridgeError(ErrorCode.BAD_REQUEST, "voice must be the name of a voice")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise BridgeError(ErrorCode.BAD_REQUEST, "model must be a string")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BridgeError(ErrorCode.BAD_REQUEST, "instructions must be a string")
    if instructions is not None and len(instructions) > MAX_INSTRUCTIONS_CHARS:
        raise BridgeError(
            ErrorCode.TEXT_TOO_LONG,
            f"instructions longer than {MAX_INSTRUCTIONS_CHARS} characters",
        )
    speed = body.get("speed")
    if speed is not None and (
        isinstance(speed, bool)
        or not isinstance(speed, int | float)
        or not MIN_SPEED <= speed <= MAX_SPEED
    ):
        raise BridgeError(
            ErrorCode.BAD_REQUEST, f"speed must be a number from {MIN_SPEED} to {MAX_SPEED}"
        )
    response_format = body.get("response_format", "mp3")
    if response_format not in RESPONSE_FORMATS:
        raise BridgeError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
        )
    stream_format = body.get("stream_format", "audio")
    if stream_format not in STREAM_FORMATS:
        raise BridgeError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"stream_format must be one of {', '.join(STREAM_FORMATS)}",
        )
    options = SpeechOptions(
        speed=None if speed is None else float(speed),
        instructions=instructions or None,
        whole=True,  # a file cut short must not look whole
    )
    return SpeechRequest(text, voice or None, response_format, stream_format, options)


def speaking_voice(engine: TtsEngine, name: str | None) -> str:
    """The engine's voice for ``name``: as :func:`~wyoming_openai.tts.base.resolve_voice`,
    but one of OpenAI's voice names (what apps written for OpenAI send) that the engine
    does not offer (e.g. Piper, without a key) is spoken with the engine's default voice.

    Raises:
        BridgeError: ``unknown-voice`` for any other name the engine does not offer.
    """
    try:
        return resolve_voice(engine, name)
    except BridgeError:
        if name not in OPENAI_VOICES:
            raise
        return engine.default_voice()


def sse_event(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``event`` as JSON ``data``."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


class _Body:
    """The response body: the encoder's bytes as they are (``audio``) or as events
    (``sse``); the response starts with the first write."""

    def __init__(self, request: web.Request, speech: SpeechRequest) -> None:
        self._request = request
        self._sse = speech.stream_format == "sse"
        if self._sse:
            headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        else:
            headers = {"Content-Type": content_type(speech.response_format)}
            if speech.response_format == "pcm":
                headers["X-Sample-Rate"] = str(SPEECH_FORMAT.rate)
        self.response = web.StreamResponse(headers=headers)

    @property
    def started(self) -> bool:
        """Whether the status and headers are sent (errors can no longer be answered)."""
        return self.response.prepared

    async def start(self) -> None:
        if not self.response.prepared:
            self.response.enable_chunked_encoding()
            await self.response.prepare(self._request)

    async def write(self, data: bytes) -> None:
        await self.start()
        if not data:
            return
        if self._sse:
            audio = base64.b64encode(data).decode("ascii")
            data = sse_event({"type": "speech.audio.delta", "audio": audio})
        await self.response.write(data)

    async def end(self) -> None:
        await self.start()
        if self._sse:
            await self.response.write(sse_event({"type": "speech.audio.done", "usage": NO_USAGE}))
        await self.response.write_eof()


async def stream_speech(
    request: web.Request, engine: TtsEngine, speech: SpeechRequest, lookahead: int
) -> web.StreamResponse:
    """Synthesize ``speech`` and stream it, encoded, as the response.

    A failure before the first byte raises; after it, the connection is cut (the client
    sees a broken body, never a silently short one).

    Raises:
        BridgeError: ``unknown-voice``, or the engine's failure before any audio.
    """
    name = speaking_voice(engine, speech.voice)
    pipeline = SynthesisPipeline(engine, name, lookahead, speech.options)
    converter = (
        AudioConverter(engine.output_format, SPEECH_FORMAT)
        if engine.output_format != SPEECH_FORMAT
        else None
    )
    encoder = SpeechEncoder(speech.response_format, SPEECH_FORMAT)

    async def run(step: Callable[..., _T], *args: Any) -> _T:
        try:
            if encoder.costly:  # e.g. MP3: milliseconds per chunk, not on the event loop
                return await asyncio.to_thread(step, *args)
            return step(*args)
        except Exception:
            _LOGGER.exception("Encoding speech as %s failed", speech.response_format)
            raise BridgeError(ErrorCode.INTERNAL, "encoding the speech failed") from None

    body = _Body(request, speech)
    opening = asyncio.create_task(run(encoder.open))  # while the first audio is awaited
    try:
        for piece in split_text(speech.text, engine.max_text_chars):
            pipeline.add(piece)
        pipeline.close()
        async for pcm in pipeline.audio():
            if converter is not None:
                pcm = converter.convert(pcm)
            if not body.started:
                await body.write(await opening)  # the container's header goes first
                metrics.first_audio("http", pipeline.started_at)
            await body.write(await run(encoder.encode, pcm))
        if converter is not None:
            await body.write(await run(encoder.encode, converter.flush()))
        if not body.started:  # nothing to say (e.g. only punctuation): an empty file
            await body.write(await opening)
        await body.write(await run(encoder.finish))
        await body.end()
        metrics.spoke("http", pipeline.fallback)
    except BridgeError as err:
        if not body.started:
            raise
        _LOGGER.warning("Speech failed after some audio; cutting the response off")
        metrics.failed("http", "tts", err.code)
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        if request.transport is not None and not request.transport.is_closing():
            raise  # not the client hanging up
        _LOGGER.debug("Speech client hung up; the rest of its speech is dropped")
    finally:
        await pipeline.aclose()
        with contextlib.suppress(BridgeError):  # logged; the answer is given already
            await opening
        with contextlib.suppress(BridgeError):
            await run(encoder.close)
    return body.response
