"""Speech to text through an OpenAI GA realtime transcription session.

Wire facts (``shared/notes/openai.md``, "Realtime transcription (GA)"):

- connect ``{base_url}/realtime?intent=transcription`` (no ``model`` query parameter);
  the service sends ``session.created``;
- ``session.update`` with ``session.type = "transcription"``, input format
  ``audio/pcm`` at 24 kHz, ``turn_detection: null`` (the client says when speech ends),
  then ``session.updated`` (or ``error``, e.g. ``model_not_found``);
- ``input_audio_buffer.append {audio: base64 PCM s16le 24 kHz mono}`` (no ack);
- ``input_audio_buffer.commit`` -> ``input_audio_buffer.committed {item_id}`` ->
  ``conversation.item.input_audio_transcription.delta {item_id, delta}``* ->
  ``...completed {item_id, transcript}`` or ``...failed {item_id, error}``;
- a commit of under 100 ms of audio is answered with
  ``error.code = input_audio_buffer_commit_empty``, so a short utterance is answered
  locally with an empty transcript and never committed;
- ``error`` events may come at any time and the socket stays open after them; a session
  lasts at most 60 minutes, then ``error.code = session_expired`` and a 1001 close.

Never losing an utterance: :class:`RealtimeSttSession` keeps all audio of the utterance
(bounded by the caller's utterance limit). If the connection cannot be made, drops, or
the session expires, it connects again and replays the utterance from its start into
the new session; deltas already passed on are not repeated. Transient failures are
retried with back-off (:mod:`wyoming_openai.retry`); after ``audio-stop`` the transcript
must arrive within ``result_timeout`` seconds, retries included.

Lifecycle: one owned task runs the attempts; every failure becomes a
:class:`BridgeError` in the results queue; ``aclose()`` cancels the task and closes the
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
from ..retry import RetryPolicy, is_retryable
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

CURRENT_MODEL = "gpt-live-transcribe"
"""The current live-audio transcription model; a configured model the service reports as
retired or unknown moves to it (``shared/notes/openai.md``, Deprecations)."""

MIN_COMMIT_MS = 100
"""The service rejects a commit of less audio than this (``input_audio_buffer_commit_empty``)."""

MAX_APPEND_BYTES = 512 * 1024
"""Audio per ``input_audio_buffer.append`` (the service allows 15 MiB; smaller keeps
WebSocket frames short when a backlog or a replay is sent at once)."""


class RealtimeSttEngine(SttEngine):
    """OpenAI realtime transcription: audio is streamed while the person speaks.

    Args:
        client: the process's SDK client (its ``base_url`` gives the WebSocket URL).
        settings: the ``stt`` settings (model, language, prompt, noise reduction).
        connect_timeout: seconds to open and configure one session.
        result_timeout: seconds from ``audio-stop`` to the transcript, retries included.
        retry: back-off between attempts.
    """

    input_format = PCM_24K_MONO

    def __init__(
        self,
        client: AsyncOpenAI,
        settings: SttSettings,
        connect_timeout: float,
        result_timeout: float,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._model = settings.model
        self.connect_timeout = connect_timeout
        self.result_timeout = result_timeout
        self.retry = retry or RetryPolicy()

    @property
    def model(self) -> str:
        """The model sessions are configured with (it may have moved to :data:`CURRENT_MODEL`)."""
        return self._model

    def models(self) -> list[SttModelInfo]:
        return [
            SttModelInfo(
                name=self._model,
                description=f"OpenAI {self._model} (realtime)",
                languages=tuple(self._settings.languages),
            )
        ]

    def session_config(
        self, request: TranscribeRequest, model: str | None = None
    ) -> dict[str, Any]:
        """The ``session`` object of ``session.update`` for ``request``."""
        settings = self._settings
        model = model or self._model
        transcription = {
            "model": model,
            **transcription_options(
                model,
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
        return RealtimeSttSession(self, request)

    async def connect(self, request: TranscribeRequest) -> AsyncRealtimeConnection:
        """Open a configured session: connect, ``session.created``, ``session.update``,
        ``session.updated``. A model the service does not know moves to
        :data:`CURRENT_MODEL` on the same connection (logged once per process).

        Raises:
            BridgeError: the session could not be configured.
            Exception: SDK/WebSocket/network errors (map them with ``bridge_error``).
        """
        connection = await self._client.realtime.connect(
            extra_query={"intent": "transcription"}
        ).enter()
        try:
            await _expect(connection, "session.created")
            while True:
                model = self._model
                await connection.session.update(session=self.session_config(request, model))  # type: ignore[arg-type]
                try:
                    await _expect(connection, "session.updated")
                    return connection
                except BridgeError as err:
                    if err.code != ErrorCode.MODEL_NOT_FOUND or model == CURRENT_MODEL:
                        raise
                    if self._model == model:
                        _LOGGER.warning(
                            "Transcription model %s is retired or unknown to the service; "
                            "using %s from now on",
                            model,
                            CURRENT_MODEL,
                        )
                        self._model = CURRENT_MODEL
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise


async def _expect(connection: AsyncRealtimeConnection, event_type: str) -> None:
    """Read events until ``event_type``; an ``error`` event raises."""
    while True:
        event = await connection.recv()
        if event.type == event_type:
            return
        if isinstance(event, RealtimeErrorEvent):
            raise _upstream_error(event.error)
        _LOGGER.debug("Ignoring %s while waiting for %s", event.type, event_type)


class RealtimeSttSession(SttSession):
    """One utterance, possibly over several connections (see the module docstring)."""

    def __init__(self, engine: RealtimeSttEngine, request: TranscribeRequest) -> None:
        self._engine = engine
        self._request = request
        self._audio = bytearray()  # the whole utterance, 24 kHz s16le mono
        self._audio_added = asyncio.Event()
        self._results: asyncio.Queue[TranscriptEvent | BridgeError] = asyncio.Queue()
        self._emitted = ""  # delta text already given out (not repeated after a replay)
        self._finished = False
        self._finish_event = asyncio.Event()
        self._deadline: asyncio.Timeout | None = None
        self._closed = False
        self.attempts = 0
        """Connections tried for this utterance (1 when nothing went wrong)."""
        self._task = asyncio.create_task(self._run(), name="realtime-stt")

    # ---------------------------------------------------------------- SttSession

    def send_audio(self, pcm: bytes) -> None:
        if pcm and not self._finished:
            self._audio += pcm
            self._audio_added.set()

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._finish_event.set()
        self._audio_added.set()
        self._start_deadline()

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

    # ---------------------------------------------------------------- attempts

    def _start_deadline(self) -> None:
        if self._deadline is not None and self._finished:
            loop = asyncio.get_running_loop()
            self._deadline.reschedule(loop.time() + self._engine.result_timeout)

    async def _run(self) -> None:
        try:
            async with asyncio.timeout(None) as deadline:
                self._deadline = deadline
                self._start_deadline()
                await self._attempts()
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            error = BridgeError(
                ErrorCode.TIMEOUT,
                f"transcription failed: no transcript within {self._engine.result_timeout:g} s",
            )
            _LOGGER.warning("%s", error)
            self._results.put_nowait(error)
        except BridgeError as error:
            _LOGGER.warning("Realtime transcription failed: %s", error)
            self._results.put_nowait(error)

    async def _attempts(self) -> None:
        """Attempt until a transcript, a permanent failure, or no retries left.

        While the person is still speaking, transient failures are retried for as long as
        it takes (the audio is kept; the back-off grows). ``audio-stop`` cuts a back-off
        short and starts a fresh schedule: at most ``retry.max_retries`` more attempts,
        within the deadline, so a service that is down is reported in well under a second.
        """
        retries_after_finish = 0
        retry = 0
        while True:
            finished_before_attempt = self._finished
            self.attempts += 1
            try:
                await self._attempt()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = bridge_error(exc, "transcription")
            if not is_retryable(error):
                raise error
            if self._finished:
                if not finished_before_attempt:
                    retry = 0  # the attempt that saw audio-stop starts a fresh schedule
                if retries_after_finish >= self._engine.retry.max_retries:
                    raise error
                retries_after_finish += 1
            _LOGGER.warning(
                "Realtime transcription attempt %d failed (%s); retrying with the %.0f ms "
                "of audio so far",
                self.attempts,
                error.message,
                PCM_24K_MONO.duration_ms(len(self._audio)),
            )
            delay = self._engine.retry.delay(retry)
            retry += 1
            if self._finished:
                await asyncio.sleep(delay)
            else:  # audio-stop ends the wait: try at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finish_event.wait(), delay)
                if self._finished:
                    retry = 0

    async def _attempt(self) -> None:
        """One connection: configure, (re)send the utterance from its start, commit, collect."""
        async with asyncio.timeout(self._engine.connect_timeout):
            connection = await self._engine.connect(self._request)
        committed = asyncio.Event()
        receiver = asyncio.create_task(
            self._receive(connection, committed), name="realtime-stt-recv"
        )
        sender = asyncio.create_task(self._send(connection, committed), name="realtime-stt-send")
        try:
            # An upstream failure while the person is still talking is acted on at once.
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver.done():
                receiver.result()  # raises the upstream failure, if any
                return
            if not sender.result():  # raises a send failure (e.g. connection dropped)
                self._results.put_nowait(TranscriptFinal(""))
                return
            await receiver
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            with contextlib.suppress(Exception):
                await connection.close()

    async def _send(self, connection: AsyncRealtimeConnection, committed: asyncio.Event) -> bool:
        """Append the utterance from its start as it grows; commit after ``audio-stop``.

        Whatever has accumulated when the sender wakes (audio that came while connecting,
        or the whole utterance on a replay) goes out in as few appends as possible.

        Returns:
            whether the buffer was committed (False: under :data:`MIN_COMMIT_MS` of audio).
        """
        offset = 0
        while True:
            if offset < len(self._audio):
                batch = bytes(self._audio[offset : offset + MAX_APPEND_BYTES])
                await connection.input_audio_buffer.append(
                    audio=base64.b64encode(batch).decode("ascii")
                )
                offset += len(batch)
            elif self._finished:
                break
            else:
                self._audio_added.clear()
                await self._audio_added.wait()

        if len(self._audio) < PCM_24K_MONO.bytes_for_ms(MIN_COMMIT_MS):
            _LOGGER.debug("Utterance under %d ms: empty transcript", MIN_COMMIT_MS)
            return False
        committed.set()
        await connection.input_audio_buffer.commit()
        return True

    async def _receive(self, connection: AsyncRealtimeConnection, committed: asyncio.Event) -> None:
        """Turn server events into results until the committed item completes."""
        item_id: str | None = None
        text = ""  # this attempt's transcript so far
        while True:
            event = await connection.recv()
            if isinstance(event, InputAudioBufferCommittedEvent):
                item_id = event.item_id
            elif isinstance(event, ConversationItemInputAudioTranscriptionDeltaEvent):
                if item_id in (None, event.item_id) and event.delta:
                    text += event.delta
                    self._emit_new(text)
            elif isinstance(event, ConversationItemInputAudioTranscriptionCompletedEvent):
                if item_id in (None, event.item_id):
                    self._results.put_nowait(TranscriptFinal(event.transcript or ""))
                    return
            elif isinstance(event, ConversationItemInputAudioTranscriptionFailedEvent):
                if item_id in (None, event.item_id):
                    message = getattr(event.error, "message", None) or "unknown reason"
                    raise BridgeError(ErrorCode.STT_FAILED, f"transcription failed: {message}")
            elif isinstance(event, RealtimeErrorEvent):
                code = event.error.code
                if code == "input_audio_buffer_commit_empty":
                    self._results.put_nowait(TranscriptFinal(""))
                    return
                if code == "session_expired":
                    raise BridgeError(
                        ErrorCode.UPSTREAM_UNAVAILABLE, "transcription session expired"
                    )
                if committed.is_set():
                    raise _upstream_error(event.error)
                _LOGGER.warning(
                    "Realtime service reported an error mid-utterance: %s (%s)",
                    event.error.message,
                    code,
                )
            else:
                _LOGGER.debug("Ignoring realtime event %s", event.type)

    def _emit_new(self, text: str) -> None:
        """Pass on the part of ``text`` not yet given out (after a replay, only new text)."""
        if len(text) > len(self._emitted) and text.startswith(self._emitted):
            self._results.put_nowait(TranscriptDelta(text[len(self._emitted) :]))
            self._emitted = text


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
    if code in ("rate_limit_exceeded", "server_error"):
        return BridgeError(
            ErrorCode.RATE_LIMITED
            if code == "rate_limit_exceeded"
            else ErrorCode.UPSTREAM_UNAVAILABLE,
            f"transcription failed: {message}",
        )
    return BridgeError(ErrorCode.UPSTREAM_ERROR, f"transcription failed: {message} ({code})")
