"""Speech to text through an OpenAI GA realtime transcription session.

Wire facts (``shared/notes/openai.md``, "Realtime transcription (GA)"):

- connect ``{base_url}/realtime?intent=transcription`` (no ``model`` query parameter);
  the service sends ``session.created``;
- ``session.update`` with ``session.type = "transcription"``, input format
  ``audio/pcm`` at 24 kHz, ``turn_detection: null`` (the client says when speech ends),
  then ``session.updated``;
- ``input_audio_buffer.append {audio: base64 PCM s16le 24 kHz mono}`` (no ack);
- ``input_audio_buffer.commit`` -> ``input_audio_buffer.committed {item_id}`` ->
  ``conversation.item.input_audio_transcription.delta {item_id, delta}``* ->
  ``...completed {item_id, transcript}`` or ``...failed {item_id, error}``;
- a commit of under 100 ms of audio is answered with
  ``error.code = input_audio_buffer_commit_empty``, so a short utterance is answered
  locally with an empty transcript and never committed.

Lifecycle of :class:`RealtimeSttSession`: one owned task runs
connect -> configure -> stream -> commit -> collect, and every failure becomes a
:class:`BridgeError` in the results queue. ``aclose()`` cancels the task and closes the
WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemInputAudioTranscriptionFailedEvent,
    InputAudioBufferCommittedEvent,
    RealtimeErrorEvent,
)

from ..audio import PCM_24K_MONO
from ..config import SttSettings
from ..errors import BridgeError, ErrorCode
from ..openai_client import bridge_error
from .base import (
    SttEngine,
    SttModelInfo,
    SttSession,
    TranscribeRequest,
    TranscriptDelta,
    TranscriptEvent,
    TranscriptFinal,
)
from .models import transcription_options

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

_LOGGER = logging.getLogger(__name__)

MIN_COMMIT_MS = 100
"""The service rejects a commit of less audio than this (``input_audio_buffer_commit_empty``)."""

MAX_APPEND_BYTES = 512 * 1024
"""Audio per ``input_audio_buffer.append`` (the service allows 15 MiB; smaller keeps
WebSocket frames short when a backlog is flushed at once)."""


class RealtimeSttEngine(SttEngine):
    """OpenAI realtime transcription: audio is streamed while the person speaks.

    Args:
        client: the process's SDK client (its ``base_url`` gives the WebSocket URL).
        settings: the ``stt`` settings (model, language, prompt, noise reduction).
        connect_timeout: seconds to open and configure the session.
        result_timeout: seconds from commit to the final transcript.
    """

    input_format = PCM_24K_MONO

    def __init__(
        self,
        client: AsyncOpenAI,
        settings: SttSettings,
        connect_timeout: float,
        result_timeout: float,
    ) -> None:
        self._client = client
        self._settings = settings
        self._connect_timeout = connect_timeout
        self._result_timeout = result_timeout

    def models(self) -> list[SttModelInfo]:
        return [
            SttModelInfo(
                name=self._settings.model,
                description=f"OpenAI {self._settings.model} (realtime)",
                languages=tuple(self._settings.languages),
            )
        ]

    def session_config(self, request: TranscribeRequest) -> dict[str, Any]:
        """The ``session`` object of ``session.update`` for ``request``."""
        settings = self._settings
        transcription = {
            "model": settings.model,
            **transcription_options(
                settings.model,
                request.language or settings.language,
                settings.prompt,
                request.names,
                request.terms,
            ),
        }
        noise = None if settings.noise_reduction == "none" else {"type": settings.noise_reduction}
        return {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": PCM_24K_MONO.rate},
                    "transcription": transcription,
                    "turn_detection": None,
                    "noise_reduction": noise,
                }
            },
        }

    def open(self, request: TranscribeRequest) -> RealtimeSttSession:
        return RealtimeSttSession(
            self._client,
            self.session_config(request),
            connect_timeout=self._connect_timeout,
            result_timeout=self._result_timeout,
        )


class RealtimeSttSession(SttSession):
    """One utterance in one realtime transcription session (see the module docstring)."""

    def __init__(
        self,
        client: AsyncOpenAI,
        session_config: Any,
        connect_timeout: float,
        result_timeout: float,
    ) -> None:
        self._client = client
        self._config = session_config
        self._connect_timeout = connect_timeout
        self._result_timeout = result_timeout
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: audio-stop
        self._results: asyncio.Queue[TranscriptEvent | BridgeError] = asyncio.Queue()
        self._connection: AsyncRealtimeConnection | None = None
        self._sent_bytes = 0
        self._finished = False
        self._closed = False
        self._task = asyncio.create_task(self._run(), name="realtime-stt")

    # ---------------------------------------------------------------- SttSession

    def send_audio(self, pcm: bytes) -> None:
        if pcm and not self._finished:
            self._outbox.put_nowait(pcm)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._outbox.put_nowait(None)

    async def results(self) -> AsyncIterator[TranscriptEvent]:
        while True:
            item = await self._results.get()
            if isinstance(item, BridgeError):
                raise item
            yield item
            if isinstance(item, TranscriptFinal):
                return

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # ---------------------------------------------------------------- the task

    async def _run(self) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                connection = await self._connect()
            try:
                await self._stream_and_collect(connection)
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = bridge_error(exc, "transcription")
            _LOGGER.warning("Realtime transcription failed: %s", error)
            self._results.put_nowait(error)

    async def _connect(self) -> AsyncRealtimeConnection:
        """Connect, await ``session.created``, configure, await ``session.updated``."""
        connection = await self._client.realtime.connect(
            extra_query={"intent": "transcription"}
        ).enter()
        self._connection = connection
        try:
            await self._expect(connection, "session.created")
            await connection.session.update(session=self._config)
            await self._expect(connection, "session.updated")
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        return connection

    @staticmethod
    async def _expect(connection: AsyncRealtimeConnection, event_type: str) -> None:
        event = await connection.recv()
        if event.type == event_type:
            return
        if isinstance(event, RealtimeErrorEvent):
            raise _upstream_error(event.error)
        raise BridgeError(
            ErrorCode.UPSTREAM_ERROR,
            f"transcription failed: expected {event_type}, got {event.type}",
        )

    async def _stream_and_collect(self, connection: AsyncRealtimeConnection) -> None:
        receiver = asyncio.create_task(self._receive(connection), name="realtime-stt-recv")
        sender = asyncio.create_task(self._send_audio(connection), name="realtime-stt-send")
        try:
            # An upstream error while the person is still talking is reported at once,
            # not at audio-stop.
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver.done():
                receiver.result()  # raises the upstream error, if any
                return  # completed without waiting for our commit
            if not await sender:
                self._results.put_nowait(TranscriptFinal(""))
                return
            async with asyncio.timeout(self._result_timeout):
                await receiver
        finally:
            for task in (sender, receiver):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(sender, receiver, return_exceptions=True)

    async def _send_audio(self, connection: AsyncRealtimeConnection) -> bool:
        """Append queued audio in order until ``audio-stop``; commit if there is enough.

        Whatever is queued when the session becomes ready (audio that came while it was
        connecting) is joined into as few appends as possible.

        Returns:
            whether the buffer was committed (False: under :data:`MIN_COMMIT_MS` of audio).
        """
        while True:
            item = await self._outbox.get()
            batch = bytearray()
            done = item is None
            if item is not None:
                batch += item
                while not self._outbox.empty() and len(batch) < MAX_APPEND_BYTES:
                    more = self._outbox.get_nowait()
                    if more is None:
                        done = True
                        break
                    batch += more
            if batch:
                audio = base64.b64encode(batch).decode("ascii")
                await connection.input_audio_buffer.append(audio=audio)
                self._sent_bytes += len(batch)
            if done:
                break

        if self._sent_bytes < PCM_24K_MONO.bytes_for_ms(MIN_COMMIT_MS):
            _LOGGER.debug("Utterance under %d ms: empty transcript", MIN_COMMIT_MS)
            return False
        await connection.input_audio_buffer.commit()
        return True

    async def _receive(self, connection: AsyncRealtimeConnection) -> None:
        """Turn server events into results until the committed item completes."""
        item_id: str | None = None
        while True:
            event = await connection.recv()
            if isinstance(event, InputAudioBufferCommittedEvent):
                item_id = event.item_id
            elif isinstance(event, ConversationItemInputAudioTranscriptionDeltaEvent):
                if item_id in (None, event.item_id) and event.delta:
                    self._results.put_nowait(TranscriptDelta(event.delta))
            elif isinstance(event, ConversationItemInputAudioTranscriptionCompletedEvent):
                if item_id in (None, event.item_id):
                    self._results.put_nowait(TranscriptFinal(event.transcript or ""))
                    return
            elif isinstance(event, ConversationItemInputAudioTranscriptionFailedEvent):
                if item_id in (None, event.item_id):
                    message = getattr(event.error, "message", None) or "unknown reason"
                    raise BridgeError(ErrorCode.STT_FAILED, f"transcription failed: {message}")
            elif isinstance(event, RealtimeErrorEvent):
                if event.error.code == "input_audio_buffer_commit_empty":
                    self._results.put_nowait(TranscriptFinal(""))
                    return
                raise _upstream_error(event.error)
            else:
                _LOGGER.debug("Ignoring realtime event %s", event.type)


def _upstream_error(error: Any) -> BridgeError:
    """A realtime ``error`` event's ``error`` object -> :class:`BridgeError`."""
    code = getattr(error, "code", None) or getattr(error, "type", None) or "error"
    message = getattr(error, "message", None) or "no message"
    if code == "model_not_found":
        return BridgeError(ErrorCode.MODEL_NOT_FOUND, f"transcription failed: {message}")
    if code in ("invalid_api_key", "authentication_error"):
        return BridgeError(ErrorCode.AUTH_FAILED, "transcription failed: the API key was refused")
    if code == "insufficient_quota":
        return BridgeError(ErrorCode.QUOTA_EXCEEDED, "transcription failed: no quota left")
    return BridgeError(ErrorCode.UPSTREAM_ERROR, f"transcription failed: {message} ({code})")
