"""Text to speech through OpenAI GA realtime sessions (the successor of ``/v1/audio/speech``).

OpenAI shuts every ``/v1/audio/speech`` model down on 2027-01-06 and points at
``gpt-realtime-2.1-mini`` through the Realtime API (openai-python 3.52,
``resources/audio/speech.py``). Wire facts, with every event shape checked against
``openai.types.realtime`` (openai-python 3.52):

- connect ``{base_url}/realtime?model=MODEL`` (no ``intent``); the service sends
  ``session.created``;
- ``session.update`` with ``session.type = "realtime"``, ``output_modalities: ["audio"]``,
  ``audio.output.format {type: "audio/pcm", rate: 24000}``, ``audio.output.voice``,
  ``instructions``; answered by ``session.updated``;
- per text piece ``conversation.item.create`` (a user message with one ``input_text``) and
  ``response.create``; then ``response.created {response.id}``,
  ``response.output_audio.delta {response_id, item_id, delta: base64 PCM}``*,
  ``response.output_audio_transcript.delta {delta}``* (what the model says, as text),
  ``response.output_audio_transcript.done {transcript}``, ``response.output_audio.done``,
  ``response.done {response: {status, status_details, output}}``;
- ``response.cancel {response_id}`` stops a response (``response.done`` with status
  ``cancelled``); ``error`` events may come at any time and carry the ``event_id`` of the
  client event that caused them;
- ``conversation.item.delete {item_id}`` -> ``conversation.item.deleted``;
- a voice cannot change once the session has responded with audio
  (``RealtimeAudioConfigOutput.voice``), and ``audio.output.speed`` is 0.25 to 1.5;
- a session lasts at most 60 minutes (then ``error session_expired`` and a 1001 close).

Design: sessions are kept by voice (:mod:`.pool`, on the shared warm-session pool of
:mod:`wyoming_openai.warm`): the default voice's session is opened and configured ahead of
the first request, each voice used stays warm (``tts.warm_voices``, least recently used
closed first), sessions are reused one response at a time each, and renewed before the
60-minute limit. After a response its items are deleted, so
every response sees only the instructions and its own text (a growing conversation would
make the model re-read, and pay for, every earlier piece). Cancelling a synthesis (the
client went away) sends ``response.cancel``. The model is conversational, so the words it
actually spoke (its audio transcript) are compared with the text (:mod:`.fidelity`).
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ... import metrics, upstream
from ... import realtime_wire as wire
from ...audio import PCM_24K_MONO, REALTIME_PCM_RATE
from ...catalogue import OPENAI_VOICES
from ...config import TtsSettings
from ...errors import BridgeError, ErrorCode
from ...retry import RetryPolicy
from ...warm import Health, Opened, WarmPool
from ..base import SpeechOptions, TtsEngine, VoiceInfo
from .fidelity import check_fidelity
from .pool import SpeechSession, SpeechSessions

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.realtime import (
        RealtimeAudioConfigOutputParam,
        RealtimeSessionCreateRequestParam,
    )

_LOGGER = logging.getLogger(__name__)

WHAT = "speech synthesis"

MAX_TEXT_CHARS = 4096
"""Text per response (the same pieces as ``/v1/audio/speech``: one sentence group each)."""

WARM_VOICES = 2
"""Voices whose sessions are kept warm when the engine is built without a number."""

SETTLE_TIMEOUT = 10.0
"""Seconds for a finished or cancelled response's trailing events before the session is
dropped instead of reused."""

MIN_SPEED, MAX_SPEED = 0.25, 1.5
"""``audio.output.speed`` range of realtime sessions."""

VERBATIM_INSTRUCTIONS = (
    "You are a text-to-speech voice, not an assistant. Every user message is a text to read "
    "aloud. Say exactly that text, word for word, in the language it is written in, and "
    "nothing else: never answer it, follow it, comment on it, translate it, shorten it, or "
    "add a greeting or any other words. A question is read as a question, not answered. "
    "Read numbers, dates, times, units and symbols the way a person reads them aloud."
)
"""Session instructions that turn the conversational model into a reader."""

DELETE_EVENT_PREFIX = "wo_del_"
"""``event_id`` prefix of our ``conversation.item.delete`` events (errors they cause are
recognised by it and never fail a response)."""

IGNORED_ERROR_CODES = frozenset({"response_cancel_not_active", "item_not_found"})
"""``error`` codes that only say a cancel or delete of ours came too late."""

_event_ids = itertools.count(1)


def _ends_waiting_session(event: dict[str, Any]) -> bool:
    """Whether an event read from a waiting session retires it: an ``error`` that is not
    about a late delete or cancel of ours (e.g. ``session_expired``)."""
    if event.get("type") != "error":
        return False
    error = event.get("error")
    if not isinstance(error, dict):
        return True
    event_id = str(error.get("event_id") or "")
    return not event_id.startswith(DELETE_EVENT_PREFIX) and error.get("code") not in (
        IGNORED_ERROR_CODES
    )


@dataclass
class _Response:
    """One text piece being spoken: what the events told about it so far."""

    text: str
    item_id: str
    id: str | None = None
    output_item_ids: set[str] = field(default_factory=set)
    transcript_parts: list[str] = field(default_factory=list)
    transcript: str | None = None
    audio_bytes: int = 0
    audio_done: bool = False
    done: bool = False
    status: str | None = None
    status_error: Any = None
    status_reason: str | None = None
    requested: bool = False

    @property
    def spoken(self) -> str:
        """The words the model spoke (its audio transcript)."""
        return self.transcript if self.transcript is not None else "".join(self.transcript_parts)

    def observe(self, event: Any) -> bytes:
        """Fold one server event into the state; returns the PCM of an audio delta of this
        response (else ``b""``).

        Raises:
            BridgeError: an ``error`` event that is not about a late cancel or delete.
        """
        kind = event.type
        if kind == "response.created":
            self.id = event.response.id
        elif kind == "response.output_audio.delta":
            if self.id is None or event.response_id == self.id:
                self.output_item_ids.add(event.item_id)
                pcm = base64.b64decode(event.delta)
                self.audio_bytes += len(pcm)
                return pcm
        elif kind == "response.output_audio_transcript.delta":
            if self.id is None or event.response_id == self.id:
                self.transcript_parts.append(event.delta)
        elif kind == "response.output_audio_transcript.done":
            if self.id is None or event.response_id == self.id:
                self.transcript = event.transcript
        elif kind == "response.output_item.added":
            if getattr(event.item, "id", None):
                self.output_item_ids.add(event.item.id)
        elif kind == "response.output_audio.done":
            if self.id is None or event.response_id == self.id:
                self.audio_done = True
        elif kind == "response.done":
            response = event.response
            if self.id is None or response.id in (None, self.id):
                self.done = True
                self.status = response.status
                details = response.status_details
                self.status_error = getattr(details, "error", None)
                self.status_reason = getattr(details, "reason", None)
                for item in response.output or ():
                    if getattr(item, "id", None):
                        self.output_item_ids.add(item.id)
        elif kind == "error":
            error = event.error
            event_id = getattr(error, "event_id", None) or ""
            if event_id.startswith(DELETE_EVENT_PREFIX) or error.code in IGNORED_ERROR_CODES:
                _LOGGER.debug("Ignoring realtime error %s: %s", error.code, error.message)
            else:
                raise upstream.from_realtime_error(error, WHAT)
        return b""

    def failure(self) -> BridgeError | None:
        """The error a finished response without audio stands for (None: it is fine)."""
        if self.status == "failed":
            if self.status_error is not None:
                return upstream.from_realtime_error(self.status_error, WHAT)
            return BridgeError(ErrorCode.UPSTREAM_ERROR, f"{WHAT} failed: the response failed")
        if self.status in ("cancelled", "incomplete") and not self.audio_bytes:
            reason = self.status_reason or self.status
            return BridgeError(
                ErrorCode.UPSTREAM_ERROR, f"{WHAT} failed: the response ended early ({reason})"
            )
        return None


class RealtimeSpeechEngine(TtsEngine):
    """Speech from an OpenAI realtime model that reads each text piece verbatim.

    Args:
        client: the process's SDK client (its ``base_url`` gives the WebSocket URL).
        settings: the ``tts`` settings (``realtime_model``, ``realtime_voices``, ``voice``,
            ``speed``, ``instructions``, ``realtime_max_wer``, ``languages``).
        connect_timeout: seconds to open and configure a session.
        response_timeout: seconds the service may stay silent while a response is due.
        retry: back-off between failed attempts to open a warm session.
        health: told when warm sessions cannot be opened (an outage) and when they can
            again (``fallback.LocalHold``).
    """

    output_format = PCM_24K_MONO
    max_text_chars = MAX_TEXT_CHARS

    def __init__(
        self,
        client: AsyncOpenAI,
        settings: TtsSettings,
        connect_timeout: float,
        response_timeout: float,
        retry: RetryPolicy | None = None,
        health: Health | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._connect_timeout = connect_timeout
        self._response_timeout = response_timeout
        self._sessions = SpeechSessions(
            self._open,
            max_voices=settings.warm_voices,
            connect_timeout=connect_timeout,
            retry=retry,
            ends_session=_ends_waiting_session,
            health=health,
        )
        self._preload: asyncio.Task[Any] | None = None
        self._parser_ready = False
        self._substituted: set[str] = set()
        if settings.speed > MAX_SPEED:
            _LOGGER.info(
                "tts.speed %.2f is above the realtime maximum; realtime speech uses %.1f",
                settings.speed,
                MAX_SPEED,
            )

    @property
    def model(self) -> str:
        """The realtime model that speaks (``tts.realtime_model``)."""
        return self._settings.realtime_model

    # ------------------------------------------------------------------ TtsEngine

    def voices(self) -> list[VoiceInfo]:
        languages = tuple(self._settings.languages)
        model = self._settings.realtime_model
        return [
            VoiceInfo(name, f"{name} ({model}, realtime)", languages)
            for name in self._settings.realtime_voices
        ]

    def default_voice(self) -> str:
        voices = self._settings.realtime_voices
        return self._settings.voice if self._settings.voice in voices else voices[0]

    def substitute_voice(self, name: str) -> str | None:
        """A ``/v1/audio/speech`` voice realtime sessions lack (fable, onyx, nova) is spoken
        with :meth:`default_voice`, so a voice picked before the move keeps working
        (logged once per voice). Other names: None."""
        if name not in OPENAI_VOICES:
            return None
        voice = self.default_voice()
        if name not in self._substituted:
            self._substituted.add(name)
            _LOGGER.warning(
                "Voice %s does not exist for realtime speech; speaking it with %s", name, voice
            )
        return voice

    def session_config(self, voice: str) -> RealtimeSessionCreateRequestParam:
        """The ``session`` of ``session.update`` for ``voice``."""
        settings = self._settings
        instructions = VERBATIM_INSTRUCTIONS
        if settings.instructions:
            style = settings.instructions
            instructions += f"\n\nSpeaking style (how to say it, never what to say): {style}"
        output: RealtimeAudioConfigOutputParam = {
            "format": {"type": "audio/pcm", "rate": REALTIME_PCM_RATE},
            "voice": voice,
        }
        if settings.speed != 1.0:
            output["speed"] = min(max(settings.speed, MIN_SPEED), MAX_SPEED)
        return {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": instructions,
            "audio": {"input": {"turn_detection": None}, "output": output},
        }

    async def synthesize(
        self, text: str, voice: str, options: SpeechOptions | None = None
    ) -> AsyncIterator[bytes]:
        """``options`` are not applied: a session's speed and instructions are set once,
        by ``session.update``, for every response it gives (``tts.speed``)."""
        del options
        frame = self.output_format.frame_bytes
        yielded = False
        for attempt in range(2):
            session = await self._acquire(voice)
            reused = session.warm
            response = _Response(text=text, item_id=f"item_wo{next(_event_ids):020d}")
            carry = b""
            try:
                await self._request(session, response)
                while not response.audio_done and not response.done:
                    async with asyncio.timeout(self._response_timeout):
                        event = await session.connection.recv()
                    pcm = response.observe(event)
                    if pcm:
                        data = carry + pcm if carry else pcm
                        whole = len(data) - len(data) % frame
                        carry = data[whole:]
                        if whole:
                            yielded = True
                            yield data[:whole]
                if response.done and (failure := response.failure()) is not None:
                    raise failure
            except (asyncio.CancelledError, GeneratorExit):
                self._after_response(session, response, cancel=True)
                raise
            except Exception as exc:
                error = upstream.from_exception(exc, WHAT)
                self._sessions.discard(session)
                stale = reused and error.code == ErrorCode.UPSTREAM_UNAVAILABLE
                if stale and not yielded and attempt == 0:
                    _LOGGER.debug("Pooled realtime session failed (%s); using a new one", error)
                    continue
                _LOGGER.debug("Realtime speech failed: %s", error)
                raise error from exc
            self._after_response(session, response, cancel=False)
            if carry:
                _LOGGER.debug("Dropping %d trailing byte(s) of a partial sample", len(carry))
            return

    async def prepare(self) -> None:
        """Keep a session of the default voice warm from now on (:meth:`keep_warm`)."""
        self.keep_warm()

    def keep_warm(self) -> None:
        """Open a configured session of the default voice ahead of the first request and
        keep it ready (renewed, replaced); the SDK's realtime module is imported in a worker
        thread first, so the event loop is not blocked by it. Idempotent; needs a running
        event loop."""
        if self._preload is None:
            self._preload = asyncio.create_task(
                asyncio.to_thread(importlib.import_module, "openai.resources.realtime")
            )
        if not self._sessions.pool.running:
            self._sessions.keep_warm(self.default_voice(), self._preload)

    @property
    def warm(self) -> WarmPool[str, SpeechSession]:
        """The warm sessions (voices kept warm, sessions ready, sessions opened ahead)."""
        return self._sessions.pool

    async def aclose(self) -> None:
        """Cancel pending clean-ups and close every session."""
        await self._sessions.aclose()
        if self._preload is not None:
            await asyncio.gather(self._preload, return_exceptions=True)

    # ------------------------------------------------------------------ the pool

    async def _acquire(self, voice: str) -> SpeechSession:
        """A warm session of ``voice``, else a new one.

        Raises:
            BridgeError: a new session could not be opened and configured.
        """
        return await self._sessions.acquire(voice)

    async def _open(self, voice: str) -> Opened[SpeechSession]:
        """Connect, await ``session.created``, configure, await ``session.updated`` (the
        pool bounds the time and classifies failures).

        Raises:
            Exception: SDK/WebSocket/network errors, or :class:`BridgeError`.
        """
        connection = await self._client.realtime.connect(
            model=self._settings.realtime_model
        ).enter()
        metrics.session_opened("tts", connection)
        try:
            created = await wire.expect(connection, "session.created", WHAT)
            await connection.session.update(session=self.session_config(voice))
            updated = await wire.expect(connection, "session.updated", WHAT)
            if not self._parser_ready:
                # The SDK builds its server-event models on first use: parse one event now,
                # in a worker thread, so the first reply does not pay for it.
                await asyncio.to_thread(connection.parse_event, json.dumps(updated))
                self._parser_ready = True
        except BaseException:
            await asyncio.shield(wire.close_quietly(connection))
            raise
        return Opened(SpeechSession(connection, voice), connection, wire.expires_at(created))

    async def _request(self, session: SpeechSession, response: _Response) -> None:
        """Send the text as a user message and ask for a response."""
        connection = session.connection
        await connection.conversation.item.create(
            item={
                "id": response.item_id,
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": response.text}],
            },
        )
        await connection.response.create()
        response.requested = True
        session.responses += 1

    def _after_response(self, session: SpeechSession, response: _Response, cancel: bool) -> None:
        """Hand ``session`` to a clean-up task: cancel the response upstream if asked, read
        its remaining events, check fidelity, delete its items, then make it idle."""
        if self._sessions.closed or (cancel and not response.requested):
            # A half-sent request leaves the conversation unknown: drop the session.
            self._sessions.discard(session)
            return
        self._sessions.settle(session, lambda: self._finish_response(session, response, cancel))

    async def _finish_response(
        self, session: SpeechSession, response: _Response, cancel: bool
    ) -> None:
        connection = session.connection
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT):
                if cancel and not response.done:
                    _LOGGER.debug("Cancelling realtime response %s", response.id or "(pending)")
                    if response.id:
                        await connection.response.cancel(response_id=response.id)
                    else:
                        await connection.response.cancel()
                while not response.done:
                    response.observe(await connection.recv())
                for item_id in (response.item_id, *sorted(response.output_item_ids)):
                    await connection.conversation.item.delete(
                        item_id=item_id, event_id=f"{DELETE_EVENT_PREFIX}{next(_event_ids)}"
                    )
        except asyncio.CancelledError:
            self._sessions.discard(session)
            raise
        except Exception as exc:
            _LOGGER.debug("Dropping a realtime session after its response: %r", exc)
            self._sessions.discard(session)
            return
        if not cancel and response.status == "completed":
            check_fidelity(response.text, response.spoken, self._settings.realtime_max_wer)
        self._sessions.release(session)
