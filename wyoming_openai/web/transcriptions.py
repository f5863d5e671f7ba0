"""``POST /v1/audio/transcriptions``: an uploaded file transcribed by the STT chain.

The request is OpenAI's (API reference, Audio > Create transcription;
``openai.types.audio.transcription_create_params``, openai-python 3.57): a
``multipart/form-data`` form with

- ``file`` (required): any audio FFmpeg reads (WAV, MP3, FLAC, OGG/Opus, WebM, M4A...),
  at most ``web.max_upload_bytes``;
- ``model``: accepted whatever it names, as OpenAI-compatible servers do: the configured
  engine serves (``GET /v1/models`` lists what really answers);
- ``language`` (ISO-639-1), or the first of ``languages[]``; ``prompt``, which replaces
  ``stt.prompt``; ``keywords[]``, which bias recognition as Wyoming's ``transcript_terms``
  do;
- ``response_format``: ``json`` (``openai.types.audio.Transcription``: ``text``,
  ``usage`` by duration), ``text`` (the text and a newline, ``text/plain``) or
  ``verbose_json`` (``TranscriptionVerbose``: ``task``, ``language`` as an ISO-639-1 code,
  ``duration`` in seconds, ``text``, and one segment spanning the audio, whose scores
  this server does not measure: ``avg_logprob`` 0, ``compression_ratio`` 1,
  ``no_speech_prob`` 0, ``tokens`` empty). ``srt``, ``vtt`` and ``diarized_json`` are
  refused with OpenAI's 400;
- ``stream``: ``true`` answers with server-sent events ``transcript.text.delta
  {delta}`` ... ``transcript.text.done {text}`` (``TranscriptionTextDeltaEvent`` /
  ``TranscriptionTextDoneEvent``), in any ``response_format``;
- ``temperature``, ``timestamp_granularities[]``, ``include[]``, ``chunking_strategy``
  and the diarization fields are accepted and ignored.

The file's audio goes to one :class:`~wyoming_openai.stt.base.SttSession` of the shared
engine as it is decoded (in a worker thread, resampled to the engine's input format), so
OpenAI (realtime or HTTP), local Whisper and the local fallback all apply. A failure
before any answer is an OpenAI-shaped error with its status; during a stream, an event
``{"error": {...}}`` (the SDK raises ``APIError`` on it) ends the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from .. import metrics
from ..errors import BridgeError, ErrorCode
from ..resample import AudioConverter
from ..stt.base import SttEngine, SttSession, TranscribeRequest, TranscriptDelta
from .decode import AudioFile

_LOGGER = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "text", "verbose_json")
"""``response_format`` values served."""

UNSERVED_FORMATS = ("srt", "vtt", "diarized_json")
"""OpenAI's other ``response_format`` values, refused with 400."""

FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for the form's other fields and boundaries when a request's ``Content-Length`` is
compared with ``web.max_upload_bytes``."""

MAX_FIELD_BYTES = 16 * 1024
"""Largest value of a field other than ``file``, bytes."""

MAX_KEYWORDS = 100
"""Most ``keywords[]`` entries."""

FEED_INTERVAL_S = 0.02
"""Decoded audio is handed to the session at most this often (seconds of decoding time),
and once at the end: a short file reaches the session in one piece, a long one as it
decodes. Each piece wakes the event loop while the decoding thread holds the GIL, and
costs the realtime session an append (see ``benchmarks/README.md``, Upload pieces)."""

_CHUNK_BYTES = 64 * 1024
_LANGUAGE = re.compile(r"[a-z]{2,3}")
_IGNORED_FIELDS = frozenset(
    {
        "temperature",
        "timestamp_granularities[]",
        "include[]",
        "chunking_strategy",
        "known_speaker_names[]",
        "known_speaker_references[]",
    }
)


@dataclass(frozen=True)
class TranscriptionForm:
    """A transcription request, read and checked.

    Attributes:
        file: the uploaded file's bytes.
        model: the ``model`` field (served by the configured engine whatever it names).
        request: language, prompt and keywords for the engine.
        response_format: one of :data:`RESPONSE_FORMATS`.
        stream: whether to answer with server-sent events.
    """

    file: bytes
    model: str | None = None
    request: TranscribeRequest = field(default_factory=TranscribeRequest)
    response_format: str = "json"
    stream: bool = False


def _bad(message: str) -> BridgeError:
    return BridgeError(ErrorCode.BAD_REQUEST, message)


def _too_large(limit: int) -> BridgeError:
    return BridgeError(
        ErrorCode.UPLOAD_TOO_LARGE, f"the file is larger than the {limit}-byte limit"
    )


async def _read_part(part: BodyPartReader, limit: int, on_excess: BridgeError) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(_CHUNK_BYTES):
        data += chunk
        if len(data) > limit:
            raise on_excess
    return bytes(data)


async def read_form(request: web.Request, max_upload_bytes: int) -> TranscriptionForm:
    """Read and check the multipart form of ``request``.

    A ``Content-Length`` beyond ``max_upload_bytes`` (plus :data:`FORM_OVERHEAD_BYTES`) is
    refused before the body is read; a longer ``file`` is refused as soon as it exceeds.

    Raises:
        BridgeError: ``UPLOAD_TOO_LARGE``; ``BAD_REQUEST`` (not multipart, no ``file``, a
            field too long or with a bad value, ``response_format`` not served).
    """
    length = request.content_length
    if length is not None and length > max_upload_bytes + FORM_OVERHEAD_BYTES:
        raise _too_large(max_upload_bytes)
    if request.content_type != "multipart/form-data":
        raise _bad("the body must be multipart/form-data with a 'file' field")
    fields: dict[str, list[str]] = {}
    file: bytes | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise _bad("nested multipart bodies are not supported")
            name = part.name or ""
            if name == "file":
                if file is not None:
                    raise _bad("only one 'file' may be sent")
                file = await _read_part(part, max_upload_bytes, _too_large(max_upload_bytes))
                continue
            too_long = _bad(f"field {name!r} is longer than {MAX_FIELD_BYTES} bytes")
            raw = await _read_part(part, MAX_FIELD_BYTES, too_long)
            try:
                value = raw.decode(part.get_charset(default="utf-8"))
            except (UnicodeDecodeError, LookupError):
                raise _bad(f"field {name!r} is not UTF-8 text") from None
            fields.setdefault(name, []).append(value)
    except ValueError as err:  # aiohttp: a malformed multipart body
        raise _bad(f"the multipart body is malformed: {err}") from None
    if not file:
        raise _bad("'file' is required: the audio file to transcribe")
    return _form(file, fields)


def _single(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise _bad(f"field {name!r} is given more than once")
    return values[0]


def _form(file: bytes, fields: dict[str, list[str]]) -> TranscriptionForm:
    """Check the text fields of a transcription form.

    Raises:
        BridgeError: ``BAD_REQUEST`` naming the field.
    """
    for name in _IGNORED_FIELDS:
        fields.pop(name, None)
    response_format = _single(fields, "response_format") or "json"
    if response_format in UNSERVED_FORMATS:
        raise _bad(
            f"response_format '{response_format}' is not served by this server; use one of "
            + ", ".join(RESPONSE_FORMATS)
        )
    if response_format not in RESPONSE_FORMATS:
        raise _bad(
            f"'{response_format}' is not a valid response_format; use one of "
            + ", ".join(RESPONSE_FORMATS)
        )
    stream_text = (_single(fields, "stream") or "false").strip().lower()
    if stream_text not in ("true", "false"):
        raise _bad("stream must be true or false")
    languages = fields.get("languages[]", [])
    language = _single(fields, "language") or (languages[0] if languages else None)
    if language is not None:
        language = language.strip().lower()
        if not _LANGUAGE.fullmatch(language):
            raise _bad(f"language {language!r} is not an ISO-639-1 code such as 'en'")
    keywords = tuple(k.strip() for k in fields.get("keywords[]", []) if k.strip())
    if len(keywords) > MAX_KEYWORDS:
        raise _bad(f"more than {MAX_KEYWORDS} keywords")
    return TranscriptionForm(
        file=file,
        model=_single(fields, "model"),
        request=TranscribeRequest(
            language=language, terms=keywords, prompt=_single(fields, "prompt"), live=False
        ),
        response_format=response_format,
        stream=stream_text == "true",
    )


# ------------------------------------------------------------------------------ serving


class _Upload:
    """One uploaded file decoded into one session of ``engine``, in a single worker-thread
    job: the file is opened there, the session is opened (on the event loop) only once
    the file has proved to hold audio, and the decoded PCM, converted to the engine's
    input format, is given to it as it comes.

    Attributes:
        session: the session, once opened (always, after :meth:`run` returned).
    """

    def __init__(self, engine: SttEngine, form: TranscriptionForm, max_ms: float) -> None:
        self._engine = engine
        self._form = form
        self._max_ms = max_ms
        self._loop = asyncio.get_running_loop()
        self._stopped = threading.Event()
        self.session: SttSession | None = None

    async def run(self) -> float:
        """Decode and send it all; returns the audio's duration in seconds.

        Raises:
            BridgeError: ``UNDECODABLE_AUDIO`` (no session is opened);
                ``UTTERANCE_TOO_LONG`` beyond ``max_ms``.
        """
        try:
            # The thread's callbacks are queued on the loop before its result, so the
            # session is open and has all the audio when this returns.
            return await asyncio.to_thread(self._decode)
        finally:
            self._stopped.set()

    async def aclose(self) -> None:
        """Stop decoding and close the session (idempotent)."""
        self._stopped.set()
        if self.session is not None:
            await self.session.aclose()

    def _open(self) -> None:  # on the event loop
        if not self._stopped.is_set():
            self.session = self._engine.open(self._form.request)

    def _send(self, pcm: bytes) -> None:  # on the event loop, in decoding order
        if self.session is not None and not self._stopped.is_set():
            self.session.send_audio(pcm)

    def _decode(self) -> float:  # in the worker thread
        audio = AudioFile(self._form.file)
        try:
            self._loop.call_soon_threadsafe(self._open)
            source, target = audio.source_format, self._engine.input_format
            converter = AudioConverter(source, target)
            decoded = bytearray()  # in the source format, converted when handed over
            total = 0
            handed_at = time.monotonic()
            for pcm in audio.pcm(self._stopped.is_set):
                total += len(pcm)
                if source.duration_ms(total) > self._max_ms:
                    raise BridgeError(
                        ErrorCode.UTTERANCE_TOO_LONG,
                        f"the audio is longer than {self._max_ms / 1000:g} seconds",
                    )
                decoded += pcm
                if time.monotonic() - handed_at >= FEED_INTERVAL_S:
                    if converted := converter.convert(bytes(decoded)):
                        self._loop.call_soon_threadsafe(self._send, converted)
                    decoded.clear()
                    handed_at = time.monotonic()
            if rest := converter.convert(bytes(decoded)) + converter.flush():
                self._loop.call_soon_threadsafe(self._send, rest)
            return source.duration_ms(total) / 1000
        finally:
            audio.close()


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def _body(form: TranscriptionForm, text: str, language: str, duration: float) -> Any:
    """The non-streamed answer in ``form.response_format`` (``text``: a str)."""
    if form.response_format == "text":
        return text + "\n"
    usage = {"type": "duration", "seconds": round(duration, 3)}
    if form.response_format == "json":
        return {"text": text, "usage": usage}
    segments = []
    if text:
        segments.append(
            {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": round(duration, 3),
                "text": text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
        )
    return {
        "task": "transcribe",
        "language": language,
        "duration": round(duration, 3),
        "text": text,
        "segments": segments,
        "usage": usage,
    }


async def serve_transcription(
    request: web.Request,
    engine: SttEngine,
    form: TranscriptionForm,
    *,
    max_seconds: float,
    default_language: str | None,
) -> web.StreamResponse:
    """Transcribe ``form.file`` with ``engine`` and answer ``request`` in its format.

    Args:
        request: the HTTP request (the stream is written to it).
        engine: the STT engine every face shares.
        form: the checked form.
        max_seconds: longest audio transcribed (``limits.max_utterance_seconds``).
        default_language: ``stt.language``, reported when neither the request nor the
            engine names one.

    Raises:
        BridgeError: before any answer: ``UNDECODABLE_AUDIO``, ``UTTERANCE_TOO_LONG``, or
            the engine's failure (upstream out and no fallback...).
    """
    upload = _Upload(engine, form, max_seconds * 1000)
    response: web.StreamResponse | None = None
    try:
        duration = await upload.run()
        session = upload.session
        assert session is not None  # opened before the first audio was decoded
        session.finish()
        ended_at = time.monotonic()
        text = ""
        fallback = False
        language = form.request.language or default_language or ""
        try:
            async for result in session.results():
                if isinstance(result, TranscriptDelta):
                    text += result.text
                    if form.stream and result.text:
                        response = await _write_event(
                            request,
                            response,
                            {"type": "transcript.text.delta", "delta": result.text},
                        )
                else:
                    text, fallback = result.text, result.fallback
                    language = result.language or language
        except BridgeError as err:
            if response is None:
                raise
            _LOGGER.warning("Transcription failed after some text: %s", err)
            metrics.failed("http", "stt", err.code)
            await response.write(_sse(_error_event(err)))
            return response
        text = text.strip()
        metrics.transcribed("http", ended_at, fallback)
        if form.stream:
            done = {"type": "transcript.text.done", "text": text}
            response = await _write_event(request, response, done)
            await response.write_eof()
            return response
        body = _body(form, text, language, duration)
        if isinstance(body, str):
            return web.Response(text=body, content_type="text/plain")
        return web.json_response(body)
    finally:
        await upload.aclose()


async def _write_event(
    request: web.Request, response: web.StreamResponse | None, event: dict[str, Any]
) -> web.StreamResponse:
    """Write one server-sent event, starting the event stream first if needed."""
    if response is None:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
    await response.write(_sse(event))
    return response


def _error_event(error: BridgeError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": "server_error",
            "param": None,
            "code": error.code,
        }
    }
