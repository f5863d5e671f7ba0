"""``POST /v1/audio/speech``: speech streamed as it is synthesized, through the TTS chain.

The request is OpenAI's (API reference, Audio > Create speech): JSON ``input``, ``voice``,
``model`` (accepted; the configured engine speaks), ``response_format``. This serves
``response_format: "pcm"`` with ``stream_format: "audio"``: raw PCM s16le mono at
24,000 Hz, chunked as it is made, as OpenAI's own ``pcm`` is. The text goes through the
same pipeline as Wyoming's (sentences synthesized ahead, the local fallback), and the
engine's audio is resampled to 24 kHz where it differs (Piper alone speaks at its voice's
rate).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiohttp import web

from .. import metrics
from ..audio import PCM_24K_MONO
from ..errors import BridgeError, ErrorCode
from ..resample import AudioConverter
from ..tts.base import TtsEngine, resolve_voice
from ..tts.pipeline import SynthesisPipeline
from ..tts.sentences import split_text

_LOGGER = logging.getLogger(__name__)

SPEECH_FORMAT = PCM_24K_MONO
"""The PCM of ``response_format: pcm`` (OpenAI's: 24 kHz, 16-bit, mono, no header)."""


def parse_request(body: Any, max_chars: int) -> tuple[str, str | None]:
    """``(input, voice)`` of a speech request body.

    Raises:
        BridgeError: ``bad-request`` (not an object, no input, an unsupported format),
            ``empty-text``, ``text-too-long``.
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
        raise BridgeError(ErrorCode.BAD_REQUEST, "voice must be a string")
    response_format = body.get("response_format", "pcm")
    stream_format = body.get("stream_format", "audio")
    if response_format != "pcm" or stream_format != "audio":
        raise BridgeError(
            ErrorCode.UNSUPPORTED_FORMAT,
            "only response_format 'pcm' with stream_format 'audio' is served",
        )
    return text, voice


async def stream_speech(
    request: web.Request, engine: TtsEngine, text: str, voice: str | None, lookahead: int
) -> web.StreamResponse:
    """Synthesize ``text`` and stream its PCM (:data:`SPEECH_FORMAT`) as the response.

    A failure before the first byte raises; after it, the connection is cut (the client
    sees a broken body, never a silently short one).

    Raises:
        BridgeError: ``unknown-voice``, or the engine's failure before any audio.
    """
    name = resolve_voice(engine, voice)
    pipeline = SynthesisPipeline(engine, name, lookahead)
    converter = (
        AudioConverter(engine.output_format, SPEECH_FORMAT)
        if engine.output_format != SPEECH_FORMAT
        else None
    )
    response = web.StreamResponse(
        headers={"Content-Type": "application/octet-stream", "X-Sample-Rate": "24000"}
    )
    try:
        for piece in split_text(text, engine.max_text_chars):
            pipeline.add(piece)
        pipeline.close()
        async for pcm in pipeline.audio():
            if converter is not None:
                pcm = converter.convert(pcm)
            if not response.prepared:
                response.enable_chunked_encoding()
                await response.prepare(request)
                metrics.first_audio("http", pipeline.started_at)
            if pcm:
                await response.write(pcm)
        if converter is not None:
            rest = converter.flush()
            if rest and response.prepared:
                await response.write(rest)
    except BridgeError as err:
        if not response.prepared:
            raise
        _LOGGER.warning("Speech failed after some audio; cutting the response off")
        metrics.failed("http", "tts", err.code)
        if request.transport is not None:
            request.transport.abort()
        return response
    except ConnectionError:
        if request.transport is not None and not request.transport.is_closing():
            raise  # not the client hanging up
        _LOGGER.debug("Speech client hung up; the rest of its speech is dropped")
        return response
    finally:
        await pipeline.aclose()
    if not response.prepared:  # nothing to say (e.g. only punctuation)
        await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # hung up as the body ended
        await response.write_eof()
    metrics.spoke("http", pipeline.fallback)
    return response
