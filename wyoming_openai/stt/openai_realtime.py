"""Speech to text through an OpenAI GA realtime transcription session.

Wire facts (``shared/notes/openai.md``, "Realtime transcription (GA)"):

- connect ``{base_url}/realtime?intent=transcription`` (no ``model`` query parameter);
  the service sends ``session.created`` (with ``expires_at``, Unix seconds);
- ``session.update`` with ``session.type = "transcription"``, input format
  ``audio/pcm`` at 24 kHz, ``turn_detection: null`` (the client says when speech ends),
  then ``session.updated`` (or ``error``, e.g. ``model_not_found``);
- ``input_audio_buffer.append {audio: base64 PCM s16le 24 kHz mono}`` (no ack);
- ``input_audio_buffer.commit`` -> ``input_audio_buffer.committed {item_id}`` ->
  ``conversation.item.input_audio_transcription.delta {item_id, delta}``* ->
  ``...completed {item_id, transcript}`` or ``...failed {item_id, error}``; every commit
  makes a new item, transcribed in order;
- a commit of under 100 ms of audio is answered with
  ``error.code = input_audio_buffer_commit_empty``, so a short utterance is answered
  locally with an empty transcript and never committed;
- ``error`` events may come at any time and the socket stays open after them; a session
  lasts at most 60 minutes, then ``error.code = session_expired`` and a 1001 close.

Speculative commit: Home Assistant sends ``audio-stop`` only after 0.7 s of silence. A
local voice-activity detector (:mod:`.vad`) hears the end of speech about 0.3 s into that
silence, and the audio so far is committed then, so the model finalizes while Home
Assistant is still counting. If speech resumes, the audio goes on into a new item, which
is committed at the next end of speech or at ``audio-stop``; the answer joins the items'
transcripts in order. At ``audio-stop`` only what is left is committed, and only if it
holds speech: otherwise the answer is ready (or about to be) already.

Warm sessions: the engine keeps ``stt.warm_sessions`` configured sessions open
(:class:`WarmSessions`), renewed before they expire and replaced when used, so an
utterance starts streaming with its first audio instead of after a connect.

Audio goes upstream in appends of :data:`APPEND_BATCH_MS` (the first audio of a
connection at once, and whatever is left immediately before a commit), not one WebSocket
message per 10 ms chunk.

Never losing an utterance: :class:`RealtimeSttSession` keeps all audio of the utterance
(bounded by the caller's utterance limit). If the connection cannot be made, drops, or
the session expires, it connects again and replays the utterance from its start into
the new session; deltas already passed on are not repeated. A replay after a commit
commits the whole utterance at ``audio-stop`` (speculative commits are not repeated).
Transient failures are retried with back-off (:mod:`wyoming_openai.retry`); after
``audio-stop`` the transcript must arrive within ``result_timeout`` seconds, retries
included.

Lifecycle: one owned task runs the attempts; every failure becomes a
:class:`BridgeError` in the results queue; ``aclose()`` cancels the task and closes the
WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import upstream
from ..audio import PCM_24K_MONO
from ..config import SttSettings
from ..errors import BridgeError, ErrorCode
from ..retry import RetryPolicy
from .base import (
    SttSession,
    TranscribeRequest,
    TranscriptDelta,
    TranscriptEvent,
    TranscriptFinal,
    drain_results,
)
from .openai_base import OpenAISttEngine

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

    from .vad import EndOfSpeechDetector

_LOGGER = logging.getLogger(__name__)

CURRENT_MODEL = "gpt-live-transcribe"
"""The current live-audio transcription model; a configured model the service reports as
retired or unknown moves to it (``shared/notes/openai.md``, Deprecations)."""

MIN_COMMIT_MS = 100
"""The service rejects a commit of less audio than this (``input_audio_buffer_commit_empty``)."""

MIN_COMMIT_BYTES = PCM_24K_MONO.bytes_for_ms(MIN_COMMIT_MS)

MAX_APPEND_BYTES = 512 * 1024
"""Audio per ``input_audio_buffer.append`` (the service allows 15 MiB; smaller keeps
WebSocket frames short when a backlog or a replay is sent at once)."""

APPEND_BATCH_MS = 80
"""Audio gathered into one ``input_audio_buffer.append`` while the person speaks, ms
(Home Assistant sends 10 ms chunks; one WebSocket message each cost 8x the sends, and a
send was about 8 % of the server's CPU at 40 ms in a py-spy profile of 50 streams). The
answer comes no later for it: what counts is the commit, before which whatever is held
is sent at once; the live deltas no client waits for come up to 80 ms later."""

APPEND_BATCH_BYTES = PCM_24K_MONO.bytes_for_ms(APPEND_BATCH_MS)

SESSION_LIFETIME = 3600.0
"""Seconds a realtime session lasts when ``session.created`` names no ``expires_at``."""

WARM_RENEW_MARGIN = 300.0
"""A warm session is replaced this many seconds before it expires (at most a quarter of
its lifetime), so no utterance (at most ``limits.max_utterance_seconds``) outlives it."""

WARM_RETRY_MAX_DELAY = 30.0
"""Longest wait, seconds, between attempts to open a warm session while the service
refuses (a bad key, an outage): requests still connect on their own and report the error."""


def _append_event(pcm: bytes) -> str:
    """``input_audio_buffer.append`` as JSON text, built directly: the SDK's generic
    ``send()`` transforms the event through its type hints, which was the largest CPU cost
    per append in the profile (base64 has no characters JSON must escape)."""
    return '{"type":"input_audio_buffer.append","audio":"' + base64.b64encode(pcm).decode() + '"}'


_COMMIT_EVENT = '{"type":"input_audio_buffer.commit"}'

DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"
COMMITTED = "input_audio_buffer.committed"


async def _recv(connection: AsyncRealtimeConnection) -> dict[str, Any]:
    """The next server event as a plain dict.

    Events are read as JSON, not through the SDK's ``recv()``: validating each one into
    its type took a fifth of the CPU of a whole (short) utterance in the profile, and only
    a few fields are read here. Field names: ``openai.types.realtime`` server events.
    """
    event = json.loads(await connection.recv_bytes())
    return event if isinstance(event, dict) else {}


class RealtimeSttEngine(OpenAISttEngine):
    """OpenAI realtime transcription: audio is streamed while the person speaks.

    Args:
        client: the process's SDK client (its ``base_url`` gives the WebSocket URL).
        settings: the ``stt`` settings (model, language, prompt, noise reduction,
            speculative commit, warm sessions).
        connect_timeout: seconds to open and configure one session.
        result_timeout: seconds from ``audio-stop`` to the transcript, retries included.
        retry: back-off between attempts.
        warm_renew_margin: seconds before expiry a warm session is replaced.
    """

    input_format = PCM_24K_MONO
    description_format = "OpenAI {model} (realtime)"

    def __init__(
        self,
        client: AsyncOpenAI,
        settings: SttSettings,
        connect_timeout: float,
        result_timeout: float,
        retry: RetryPolicy | None = None,
        warm_renew_margin: float = WARM_RENEW_MARGIN,
    ) -> None:
        super().__init__(client, settings, retry)
        self.connect_timeout = connect_timeout
        self.result_timeout = result_timeout
        self.speculative_commit = settings.speculative_commit
        """Whether sessions commit at the end of speech a local detector hears."""
        self.warm = WarmSessions(self, settings.warm_sessions, warm_renew_margin)
        self._closing: set[asyncio.Task[None]] = set()
        self._preload: asyncio.Task[Any] | None = None

    def session_config(
        self, request: TranscribeRequest, model: str | None = None
    ) -> dict[str, Any]:
        """The ``session`` object of ``session.update`` for ``request``."""
        settings = self._settings
        transcription = self.transcription(request, model)
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

    def close_later(self, connection: AsyncRealtimeConnection) -> asyncio.Task[None]:
        """Close ``connection`` in a task of its own, which cancelling the caller does not
        cut short (a half-closed WebSocket would stay open); :meth:`aclose` waits for it."""
        task = asyncio.create_task(_close(connection), name="realtime-stt-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def prepare(self) -> None:
        """Load the SDK's realtime module in a worker thread and start opening the warm
        sessions, both in the background: start-up does not wait, and the event loop is
        not blocked by the import (about 0.25 s of CPU) when the first session opens."""
        if self._preload is None:
            self._preload = asyncio.create_task(
                asyncio.to_thread(importlib.import_module, "openai.resources.realtime")
            )
        self.warm.start(self._preload)

    async def aclose(self) -> None:
        """Close the warm sessions, and wait for sessions still closing."""
        await self.warm.aclose()
        await asyncio.gather(*self._closing, return_exceptions=True)
        if self._preload is not None:
            await asyncio.gather(self._preload, return_exceptions=True)

    async def connect(self, request: TranscribeRequest) -> AsyncRealtimeConnection:
        """A configured session for ``request``: a warm one if there is one (reconfigured
        with ``session.update`` if ``request`` needs another configuration), else a new
        one (:meth:`open_session`).

        Raises:
            BridgeError: the session could not be configured.
            Exception: SDK/WebSocket/network errors (``upstream.from_exception``).
        """
        self.warm.remember(request)
        warm = await self.warm.take()
        if warm is not None:
            try:
                await self._configure(warm.connection, request, warm.config)
                return warm.connection
            except BaseException:
                with contextlib.suppress(Exception):
                    await warm.connection.close()
                raise
        connection, _expires_at = await self.open_session(request)
        return connection

    async def open_session(
        self, request: TranscribeRequest
    ) -> tuple[AsyncRealtimeConnection, float]:
        """Open a configured session: connect, ``session.created``, ``session.update``,
        ``session.updated``.

        Returns:
            the connection and when the session expires (Unix time, seconds).

        Raises:
            BridgeError: the session could not be configured.
            Exception: SDK/WebSocket/network errors (``upstream.from_exception``).
        """
        connection = await self._client.realtime.connect(
            extra_query={"intent": "transcription"}
        ).enter()
        try:
            created = await _expect(connection, "session.created")
            session = created.get("session")
            expires_at = session.get("expires_at") if isinstance(session, dict) else None
            if not isinstance(expires_at, int | float) or expires_at <= time.time():
                expires_at = time.time() + SESSION_LIFETIME
            await self._configure(connection, request, None)
            return connection, float(expires_at)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise

    async def _configure(
        self,
        connection: AsyncRealtimeConnection,
        request: TranscribeRequest,
        current: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Send ``session.update`` for ``request`` unless ``current`` (the configuration the
        session has) already is it; a model the service does not know moves to
        :data:`CURRENT_MODEL` (logged once per process). Returns the configuration."""
        while True:
            model = self._model
            config = self.session_config(request, model)
            if config == current:
                return config
            await connection.send_raw(json.dumps({"type": "session.update", "session": config}))
            try:
                await _expect(connection, "session.updated")
                return config
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


async def _expect(connection: AsyncRealtimeConnection, event_type: str) -> Any:
    """Read events until ``event_type`` and return it; an ``error`` event raises."""
    while True:
        event = await _recv(connection)
        if event.get("type") == event_type:
            return event
        if event.get("type") == "error":
            raise upstream.from_realtime_error(event.get("error"), "transcription")
        _LOGGER.debug("Ignoring %s while waiting for %s", event.get("type"), event_type)


# --------------------------------------------------------------------------- warm sessions


@dataclass(eq=False)
class _WarmSession:
    connection: AsyncRealtimeConnection
    config: dict[str, Any]
    renew_at: float  # Unix time, seconds
    watcher: asyncio.Task[None] | None = None
    alive: bool = True


class WarmSessions:
    """Configured transcription sessions opened ahead of requests.

    One task keeps ``size`` sessions ready: it opens them with the configuration of the
    last request seen (language, names, terms; the configured defaults before the first),
    replaces one as soon as it is taken, and renews each ``renew_margin`` seconds before
    it expires (``expires_at`` of ``session.created``; sessions last 60 minutes). While a
    session waits, a watcher reads its events, so one the service ends (expiry, error,
    close) is dropped and replaced at once. Failures to open are retried with growing
    back-off up to :data:`WARM_RETRY_MAX_DELAY` and logged once; requests meanwhile open
    their own sessions and report the error.

    Args:
        engine: the engine whose sessions these are.
        size: sessions to keep ready (0: none, :meth:`take` always returns None).
        renew_margin: seconds before expiry a session is replaced.
    """

    def __init__(self, engine: RealtimeSttEngine, size: int, renew_margin: float) -> None:
        self._engine = engine
        self.size = size
        self._renew_margin = renew_margin
        self._request = TranscribeRequest()
        self._ready: list[_WarmSession] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.opened = 0
        """Warm sessions opened so far (for logs and tests)."""

    @property
    def ready(self) -> int:
        """Sessions ready to be taken now."""
        return sum(1 for warm in self._ready if warm.alive)

    def start(self, after: Awaitable[Any] | None = None) -> None:
        """Start keeping sessions ready, once ``after`` is done (idempotent; needs a
        running event loop)."""
        if self.size > 0 and self._task is None:
            self._task = asyncio.create_task(self._maintain(after), name="stt-warm-sessions")

    def remember(self, request: TranscribeRequest) -> None:
        """Open the next warm sessions with ``request``'s configuration (Home Assistant
        sends the same language every time, so the next request needs no update)."""
        self._request = request

    async def take(self) -> _WarmSession | None:
        """A ready session, no longer watched (the caller owns it), or None."""
        while self._ready:
            warm = self._ready.pop(0)
            self._changed.set()  # open a replacement
            if warm.watcher is not None:
                warm.watcher.cancel()
                await asyncio.wait({warm.watcher})  # no recv() of ours left on it
            if warm.alive and time.time() < warm.renew_at:
                return warm
            self._close_later(warm)
        return None

    async def aclose(self) -> None:
        """Stop opening sessions and close the ready ones."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ready, self._ready = self._ready, []
        for warm in ready:
            if warm.watcher is not None:
                warm.watcher.cancel()
        await asyncio.gather(
            *(w.watcher for w in ready if w.watcher is not None), return_exceptions=True
        )
        await asyncio.gather(*(_close(w.connection) for w in ready), return_exceptions=True)

    def _close_later(self, warm: _WarmSession) -> None:
        warm.alive = False
        self._engine.close_later(warm.connection)

    async def _maintain(self, after: Awaitable[Any] | None) -> None:
        if after is not None:
            with contextlib.suppress(Exception):
                await after
        failures = 0
        while True:
            now = time.time()
            for warm in [w for w in self._ready if not w.alive or w.renew_at <= now]:
                self._ready.remove(warm)
                if warm.alive:
                    _LOGGER.debug("Renewing a warm transcription session before it expires")
                    if warm.watcher is not None:
                        warm.watcher.cancel()
                    self._close_later(warm)
            if len(self._ready) < self.size:
                try:
                    warm = await self._open()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = upstream.from_exception(exc, "opening a warm transcription session")
                    level = logging.WARNING if failures == 0 else logging.DEBUG
                    _LOGGER.log(level, "%s; requests connect on their own meanwhile", error)
                    delay = min(
                        self._engine.retry.delay(min(failures, 16)) * 4, WARM_RETRY_MAX_DELAY
                    )
                    failures += 1
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                self._ready.append(warm)
                continue
            next_renewal = min(w.renew_at for w in self._ready)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, next_renewal - time.time()))

    async def _open(self) -> _WarmSession:
        request = self._request
        async with asyncio.timeout(self._engine.connect_timeout):
            connection, expires_at = await self._engine.open_session(request)
        lifetime = max(0.0, expires_at - time.time())
        margin = min(self._renew_margin, lifetime / 4)
        warm = _WarmSession(
            connection, self._engine.session_config(request), renew_at=expires_at - margin
        )
        warm.watcher = asyncio.create_task(self._watch(warm), name="stt-warm-watch")
        self.opened += 1
        _LOGGER.debug("Warm transcription session ready (renewed in %.0f s)", lifetime - margin)
        return warm

    async def _watch(self, warm: _WarmSession) -> None:
        """Read the waiting session's events: any error or close retires it."""
        try:
            while True:
                event = await _recv(warm.connection)
                if event.get("type") == "error":
                    _LOGGER.debug("Warm transcription session ended: %s", event.get("error"))
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _LOGGER.debug("Warm transcription session closed: %r", exc)
        warm.alive = False
        self._changed.set()


async def _close(connection: AsyncRealtimeConnection) -> None:
    with contextlib.suppress(Exception):
        await connection.close()


# --------------------------------------------------------------------------- one utterance


@dataclass
class _Attempt:
    """One connection's commits and their transcripts, in commit order."""

    speculative: bool
    commits: int = 0
    sending_done: bool = False
    order: list[str | None] = field(default_factory=list)  # item ids (None: empty commit)
    texts: dict[str, str] = field(default_factory=dict)  # deltas so far, per item id
    finals: dict[str, str] = field(default_factory=dict)  # completed transcripts
    answered: bool = False

    @property
    def complete(self) -> bool:
        """Every commit sent is transcribed and no more will be sent."""
        return (
            self.sending_done
            and len(self.order) == self.commits
            and all(item is None or item in self.finals for item in self.order)
        )

    def text(self) -> str:
        """The transcript so far: finished items, then the first unfinished one's deltas."""
        parts: list[str] = []
        for item in self.order:
            if item is None:
                continue
            if item in self.finals:
                parts.append(self.finals[item])
                continue
            parts.append(self.texts.get(item, ""))
            break
        return " ".join(part.strip() for part in parts if part.strip())


class RealtimeSttSession(SttSession):
    """One utterance, possibly over several connections (see the module docstring)."""

    def __init__(self, engine: RealtimeSttEngine, request: TranscribeRequest) -> None:
        self._engine = engine
        self._request = request
        self._audio = bytearray()  # the whole utterance, 24 kHz s16le mono
        self._audio_added = asyncio.Event()
        self._wake_at = 1  # bytes of audio at which the sender wants waking
        self._vad: EndOfSpeechDetector | None = None
        if engine.speculative_commit:
            from .vad import EndOfSpeechDetector  # not needed at start-up

            self._vad = EndOfSpeechDetector()
        self._speech_ends: list[int] = []  # offsets into _audio where speech ended
        self._committed = False  # some attempt sent a commit (a replay commits at the end)
        self._results: asyncio.Queue[TranscriptEvent | BridgeError] = asyncio.Queue()
        self._emitted = ""  # delta text already given out (not repeated after a replay)
        self._finished = False
        self._finish_event = asyncio.Event()
        self._deadline: asyncio.Timeout | None = None
        self._closed = False
        self.attempts = 0
        """Connections tried for this utterance (1 when nothing went wrong)."""
        self.speculative_commits = 0
        """Commits sent before ``audio-stop`` (for logs and tests)."""
        self._task = asyncio.create_task(self._run(), name="realtime-stt")

    # ---------------------------------------------------------------- SttSession

    def send_audio(self, pcm: bytes) -> None:
        if not pcm or self._finished:
            return
        self._audio += pcm
        if self._vad is not None:
            for end in self._vad.feed(pcm):
                self._speech_ends.append(min(end, len(self._audio)))
                self._audio_added.set()
        if len(self._audio) >= self._wake_at:
            self._audio_added.set()

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._finish_event.set()
        self._audio_added.set()
        self._start_deadline()

    def results(self) -> AsyncIterator[TranscriptEvent]:
        return drain_results(self._results)

    @property
    def speech_detector(self) -> EndOfSpeechDetector | None:
        return self._vad

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
                error = upstream.from_exception(exc, "transcription")
            if not error.retryable:
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
        attempt = _Attempt(speculative=self._vad is not None and not self._committed)
        receiver = asyncio.create_task(self._receive(connection, attempt), name="realtime-stt-recv")
        sender = asyncio.create_task(self._send(connection, attempt), name="realtime-stt-send")
        try:
            # An upstream failure while the person is still talking is acted on at once.
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver.done():
                receiver.result()  # raises the upstream failure, if any
                return
            sender.result()  # raises a send failure (e.g. connection dropped)
            if attempt.complete:  # nothing left to wait for (no commit, or all answered)
                self._answer(attempt)
                return
            await receiver
        finally:
            for task in (sender, receiver):
                task.cancel()
            # Closing is started before anything is awaited here: the transcript may be out
            # already, and the caller then cancels this task (the engine waits for the close
            # at shutdown).
            closing = self._engine.close_later(connection)
            await asyncio.gather(sender, receiver, return_exceptions=True)
            await asyncio.shield(closing)

    def _answer(self, attempt: _Attempt) -> None:
        """The final transcript: every item's, joined in commit order."""
        if not attempt.answered:
            attempt.answered = True
            self._results.put_nowait(TranscriptFinal(attempt.text()))

    async def _send(self, connection: AsyncRealtimeConnection, attempt: _Attempt) -> None:
        """Append the utterance from its start as it grows; commit at each end of speech
        (speculative attempts) and after ``audio-stop`` what is left.

        Audio goes out in batches of :data:`APPEND_BATCH_BYTES` (the first audio of the
        connection at once; a backlog, e.g. a replay, in as few appends as possible).
        """
        offset = 0  # bytes of _audio appended on this connection
        committed_at = 0  # end of the last commit
        ends_seen = 0  # entries of _speech_ends handled
        while True:
            if attempt.speculative and ends_seen < len(self._speech_ends):
                end = self._speech_ends[ends_seen]
                ends_seen += 1
                if end - committed_at >= MIN_COMMIT_BYTES:
                    offset = await self._append(connection, offset, end)
                    await self._commit(connection, attempt)
                    committed_at = end
                    self.speculative_commits += 1
                    _LOGGER.debug(
                        "Speech ended: committed %.0f ms of audio before audio-stop",
                        PCM_24K_MONO.duration_ms(end),
                    )
                continue
            pending = len(self._audio) - offset
            if pending and (pending >= APPEND_BATCH_BYTES or offset == 0 or self._finished):
                offset = await self._append(connection, offset, len(self._audio))
                continue
            if self._finished:
                break
            self._wake_at = offset + APPEND_BATCH_BYTES if offset else 1
            self._audio_added.clear()
            await self._audio_added.wait()

        rest = len(self._audio) - committed_at
        if attempt.commits == 0:
            if rest >= MIN_COMMIT_BYTES:
                await self._commit(connection, attempt)
            else:
                _LOGGER.debug("Utterance under %d ms: empty transcript", MIN_COMMIT_MS)
        elif self._vad is not None and self._vad.in_speech and rest >= MIN_COMMIT_BYTES:
            await self._commit(connection, attempt)  # speech resumed after the last commit
        attempt.sending_done = True

    async def _append(self, connection: AsyncRealtimeConnection, start: int, end: int) -> int:
        """Send ``_audio[start:end]`` (in appends of at most :data:`MAX_APPEND_BYTES`)."""
        while start < end:
            stop = min(end, start + MAX_APPEND_BYTES)
            await connection.send_raw(_append_event(bytes(self._audio[start:stop])))
            start = stop
        return start

    async def _commit(self, connection: AsyncRealtimeConnection, attempt: _Attempt) -> None:
        attempt.commits += 1
        self._committed = True
        await connection.send_raw(_COMMIT_EVENT)

    async def _receive(self, connection: AsyncRealtimeConnection, attempt: _Attempt) -> None:
        """Turn server events into results until every committed item is transcribed."""
        while True:
            event = await _recv(connection)
            kind = event.get("type")
            item = str(event.get("item_id"))
            if kind == DELTA:
                delta = event.get("delta")
                if delta and isinstance(delta, str) and item not in attempt.finals:
                    attempt.texts[item] = attempt.texts.get(item, "") + delta
                    self._emit_new(attempt.text())
                continue
            if kind == COMMITTED:
                attempt.order.append(item)
            elif kind == COMPLETED:
                transcript = event.get("transcript")
                attempt.finals[item] = transcript if isinstance(transcript, str) else ""
                self._emit_new(attempt.text())
            elif kind == FAILED:
                error = event.get("error")
                message = (error.get("message") if isinstance(error, dict) else None) or (
                    "unknown reason"
                )
                raise BridgeError(ErrorCode.STT_FAILED, f"transcription failed: {message}")
            elif kind == "error":
                error = event.get("error")
                code = error.get("code") if isinstance(error, dict) else None
                if code == "input_audio_buffer_commit_empty":
                    attempt.order.append(None)  # that commit's item: nothing said
                elif code == "session_expired":
                    raise BridgeError(
                        ErrorCode.UPSTREAM_UNAVAILABLE, "transcription session expired"
                    )
                elif attempt.commits:
                    raise upstream.from_realtime_error(error, "transcription")
                else:
                    _LOGGER.warning(
                        "Realtime service reported an error mid-utterance: %s (%s)",
                        error.get("message") if isinstance(error, dict) else error,
                        code,
                    )
            else:
                _LOGGER.debug("Ignoring realtime event %s", kind)
                continue
            if attempt.complete:
                self._answer(attempt)
                return

    def _emit_new(self, text: str) -> None:
        """Pass on the part of ``text`` not yet given out (after a replay, only new text)."""
        if len(text) > len(self._emitted) and text.startswith(self._emitted):
            self._results.put_nowait(TranscriptDelta(text[len(self._emitted) :]))
            self._emitted = text
