"""One utterance streamed into realtime transcription sessions, never lost.

Speculative commit: Home Assistant sends ``audio-stop`` only after 0.7 s of silence
(``homeassistant/components/assist_pipeline/vad.py``, Home Assistant 2026.11). A local
voice-activity detector (:mod:`wyoming_openai.vad`) hears the end of speech 0.1-0.3 s
into that silence, and
the audio so far is committed then, so the model finalizes while Home Assistant is still
counting. If speech resumes after such a commit (the end was a pause inside the command),
the uncommitted audio is cleared (``input_audio_buffer.clear``) and the whole utterance is
appended again from its start, to be committed at the next end of speech or at
``audio-stop``: the answer is that last item's transcript alone, so a command is never
transcribed in pieces (the earlier items' transcripts are dropped; their audio is billed
twice). At ``audio-stop`` only what is left is committed, and only if it holds speech.

A commit of under 100 ms of audio is answered with ``error.code =
input_audio_buffer_commit_empty``, so a shorter utterance is answered with an empty
transcript and never committed.

Never losing an utterance: the session keeps all audio of the utterance (bounded by the
caller's utterance limit). If the connection cannot be made, drops, or the session
expires, it connects again and replays the utterance from its start into the new session;
deltas already passed on are not repeated. A replay after a commit commits the whole
utterance at ``audio-stop``. Transient failures are retried with back-off
(:mod:`wyoming_openai.retry`); after ``audio-stop`` the transcript must arrive within the
engine's ``result_timeout`` seconds, retries included.

Hedged (:mod:`wyoming_openai.hedge`): when an attempt owes an answer (a commit not yet
transcribed; or, once the speech ended, no commit because its session is still
connecting, counted from the connect's start) for longer than the engine's ``finalize``
tracker allows, a fresh attempt replays the utterance in parallel (once per utterance);
the first to answer wins and the other is cancelled, its session closed. ``overdue``
tells a caller with a local engine to start it too.

Lifecycle: one owned task runs the attempts; every failure becomes a
:class:`BridgeError` in the results queue; ``aclose()`` cancels the task and closes the
WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ... import metrics, upstream
from ... import realtime_wire as wire
from ...audio import PCM_24K_MONO
from ...errors import BridgeError, ErrorCode
from ..base import (
    MIN_UTTERANCE_MS,
    SttSession,
    TranscribeRequest,
    TranscriptDelta,
    TranscriptEvent,
    TranscriptFinal,
    drain_results,
)

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

    from ...vad import EndOfSpeechDetector
    from .engine import RealtimeSttEngine

_LOGGER = logging.getLogger(__name__)

MIN_COMMIT_BYTES = PCM_24K_MONO.bytes_for_ms(MIN_UTTERANCE_MS)

MAX_APPEND_BYTES = 512 * 1024
"""Audio per ``input_audio_buffer.append`` (the service allows 15 MiB; smaller keeps
WebSocket frames short when a backlog or a replay is sent at once)."""

APPEND_BATCH_MS = 80
"""Audio gathered into one ``input_audio_buffer.append`` while the person speaks, ms. The
answer comes no later for it: before a commit whatever is held is sent at once."""

APPEND_BATCH_BYTES = PCM_24K_MONO.bytes_for_ms(APPEND_BATCH_MS)

CLEAR_EVENT = '{"type":"input_audio_buffer.clear"}'
"""Drops the uncommitted audio (``InputAudioBufferClearEvent`` in
``openai.types.realtime``), before the utterance is appended again from its start."""

WHAT = "transcription"


@dataclass
class _Attempt:
    """One connection's commits and their transcripts, in commit order."""

    speculative: bool
    started_at: float = 0.0  # loop time the attempt began
    connected: bool = False  # its session is open and configured
    commits: int = 0
    commit_times: list[float] = field(default_factory=list)  # loop time of each commit sent
    answers: int = 0  # commits answered (transcript, or nothing said)
    superseded: int = 0  # first commits whose items a later re-commit of everything replaced
    wake_at: int = 1  # bytes of audio at which its sender wants waking
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # commit/answer/audio-stop
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

    def waiting_since(self, wanted_at: float | None) -> float | None:
        """Since when (loop time) this attempt owes an answer: its oldest unanswered
        commit; before its first commit, once one is wanted (``wanted_at``: the speech
        ended), since then, or since the attempt began while it is still connecting (a
        connect that slow is overdue itself); None: nothing owed yet."""
        if self.answers < len(self.commit_times):
            return self.commit_times[self.answers]
        if self.commits == 0 and wanted_at is not None:
            return max(wanted_at, self.started_at) if self.connected else self.started_at
        return None

    def text(self) -> str:
        """The transcript so far: finished items, then the first unfinished one's deltas."""
        parts: list[str] = []
        for item in self.order[self.superseded :]:
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
        self._live: list[_Attempt] = []  # attempts running now (two while hedging)
        self._wanted_at: float | None = None  # loop time a commit was first due
        self._vad: EndOfSpeechDetector | None = None
        if engine.speculative_commit and request.live:
            from ...vad import EndOfSpeechDetector  # not needed at start-up

            self._vad = EndOfSpeechDetector()
        self._speech_ends: list[int] = []  # offsets into _audio where speech ended
        self._resumed_at: list[int] = []  # offsets into _audio where speech started again
        self._committed = False  # some attempt sent a commit (a replay commits at the end)
        self._results: asyncio.Queue[TranscriptEvent | BridgeError] = asyncio.Queue()
        self._emitted = ""  # delta text already given out (not repeated after a replay)
        self._finished = False
        self._finish_event = asyncio.Event()
        self._deadline: asyncio.Timeout | None = None
        self._closed = False
        self._answered = False
        self.attempts = 0
        """Connections tried for this utterance (1 when nothing went wrong)."""
        self.hedges = 0
        """Fresh sessions started because the answer was overdue (at most 1)."""
        self._overdue = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="realtime-stt")

    # ---------------------------------------------------------------- SttSession

    def send_audio(self, pcm: bytes) -> None:
        if not pcm or self._finished:
            return
        self._audio += pcm
        if self._vad is not None:
            starts = len(self._vad.speech_starts)
            for end in self._vad.feed(pcm):
                self._speech_ends.append(min(end, len(self._audio)))
                self._audio_added.set()
                self._commit_wanted()
            for start in self._vad.speech_starts[max(1, starts) :]:
                self._resumed_at.append(min(start, len(self._audio)))
                self._audio_added.set()
        if any(len(self._audio) >= attempt.wake_at for attempt in self._live):
            self._audio_added.set()

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._finish_event.set()
        self._audio_added.set()
        self._commit_wanted()
        self._start_deadline()

    def results(self) -> AsyncIterator[TranscriptEvent]:
        return drain_results(self._results)

    @property
    def speech_detector(self) -> EndOfSpeechDetector | None:
        return self._vad

    @property
    def overdue(self) -> asyncio.Event:
        """Set once the answer is overdue (:mod:`wyoming_openai.hedge`): a fresh session
        was started; a caller holding another engine may start it too."""
        return self._overdue

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
            try:
                await self._race()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = upstream.from_exception(exc, WHAT)
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
            metrics.retried("stt")
            if self._finished:
                await asyncio.sleep(delay)
            else:  # audio-stop ends the wait: try at once
                with contextlib.suppress(TimeoutError):
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a
                    # cancellation that arrives as the event is set (python/cpython#86296)
                    async with asyncio.timeout(delay):
                        await self._finish_event.wait()
                if self._finished:
                    retry = 0

    def _commit_wanted(self) -> None:
        """The speech ended (or ``audio-stop``): from now on an answer is owed."""
        if self._wanted_at is None:
            self._wanted_at = asyncio.get_running_loop().time()
        for attempt in self._live:
            attempt.changed.set()

    def _new_attempt(self) -> tuple[_Attempt, asyncio.Task[None]]:
        self.attempts += 1
        attempt = _Attempt(
            speculative=self._vad is not None and not self._committed,
            started_at=asyncio.get_running_loop().time(),
        )
        self._live.append(attempt)
        task = asyncio.create_task(self._attempt(attempt), name="realtime-stt-attempt")
        task.add_done_callback(lambda _: self._live.remove(attempt))
        return attempt, task

    async def _race(self) -> None:
        """One attempt; if its answer is overdue (the engine's ``finalize`` tracker) and
        no hedge ran yet, a fresh attempt replays the utterance in parallel. The first
        attempt to answer wins; the other is cancelled (its session closed). Raises the
        first failure once every attempt failed."""
        attempt, first = self._new_attempt()
        running = {first}
        watch: asyncio.Task[None] | None = None
        after = self._engine.finalize.overdue_after()
        if after is not None and self.hedges == 0:
            watch = asyncio.create_task(
                self._until_overdue(attempt, after), name="realtime-stt-hedge"
            )
        failure: BaseException | None = None
        try:
            while running:
                waiting: set[asyncio.Task[None]] = set(running)
                if watch is not None:
                    waiting.add(watch)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in running & done:
                    running.discard(task)
                    error = task.exception()
                    if error is None:
                        return
                    failure = failure or error
                if watch is not None and watch in done:
                    watch = None
                    if running:  # the overdue attempt is still there: hedge it
                        self.hedges += 1
                        self._engine.finalize.hedged(
                            "a fresh session replays the utterance", after or 0.0
                        )
                        self._overdue.set()
                        running.add(self._new_attempt()[1])
            assert failure is not None
            raise failure
        finally:
            tasks = [*running, *([watch] if watch is not None else [])]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _until_overdue(self, attempt: _Attempt, after: float) -> None:
        """Return once ``attempt`` has owed an answer for ``after`` seconds."""
        loop = asyncio.get_running_loop()
        while True:
            attempt.changed.clear()
            since = attempt.waiting_since(self._wanted_at)
            timeout = None if since is None else since + after - loop.time()
            if timeout is not None and timeout <= 0:
                return
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a
                # cancellation that arrives as the event is set (python/cpython#86296)
                async with asyncio.timeout(timeout):
                    await attempt.changed.wait()

    async def _attempt(self, attempt: _Attempt) -> None:
        """One connection: configure, (re)send the utterance from its start, commit, collect."""
        async with asyncio.timeout(self._engine.connect_timeout):
            connection = await self._engine.connect(self._request)
        attempt.connected = True
        attempt.changed.set()
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
        """The final transcript: every item's, joined in commit order (only the first
        attempt to answer gives it)."""
        if not attempt.answered:
            attempt.answered = True
            if not self._answered:
                self._answered = True
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
        resumes_seen = 0  # entries of _resumed_at handled
        while True:
            if attempt.speculative and resumes_seen < len(self._resumed_at):
                resumed = self._resumed_at[resumes_seen]
                # Handled in audio order: only a resumption after the last end counts.
                if ends_seen == len(self._speech_ends) or self._speech_ends[ends_seen] > resumed:
                    resumes_seen += 1
                    if attempt.commits > attempt.superseded:
                        await connection.send_raw(CLEAR_EVENT)
                        attempt.superseded = attempt.commits
                        offset = committed_at = 0  # the whole utterance again, one item
                        _LOGGER.debug("Speech resumed: re-committing the whole utterance")
                    continue
            if attempt.speculative and ends_seen < len(self._speech_ends):
                end = self._speech_ends[ends_seen]
                ends_seen += 1
                if end - committed_at >= MIN_COMMIT_BYTES:
                    offset = await self._append(connection, offset, end)
                    await self._commit(connection, attempt)
                    committed_at = end
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
            attempt.wake_at = offset + APPEND_BATCH_BYTES if offset else 1
            self._audio_added.clear()
            await self._audio_added.wait()

        rest = len(self._audio) - committed_at
        if attempt.commits == attempt.superseded:
            if rest >= MIN_COMMIT_BYTES:
                await self._commit(connection, attempt)
            else:
                _LOGGER.debug("Utterance under %d ms: empty transcript", MIN_UTTERANCE_MS)
        elif self._vad is not None and self._vad.in_speech and rest >= MIN_COMMIT_BYTES:
            await self._commit(connection, attempt)  # speech resumed after the last commit
        attempt.sending_done = True

    async def _append(self, connection: AsyncRealtimeConnection, start: int, end: int) -> int:
        """Send ``_audio[start:end]`` (in appends of at most :data:`MAX_APPEND_BYTES`)."""
        while start < end:
            stop = min(end, start + MAX_APPEND_BYTES)
            await connection.send_raw(wire.append_event(bytes(self._audio[start:stop])))
            start = stop
        return start

    async def _commit(self, connection: AsyncRealtimeConnection, attempt: _Attempt) -> None:
        attempt.commits += 1
        self._committed = True
        await connection.send_raw(wire.COMMIT_EVENT)
        attempt.commit_times.append(asyncio.get_running_loop().time())
        attempt.changed.set()

    async def _receive(self, connection: AsyncRealtimeConnection, attempt: _Attempt) -> None:
        """Turn server events into results until every committed item is transcribed."""
        while True:
            event = await wire.recv_event(connection)
            kind = event.get("type")
            item = str(event.get("item_id"))
            if kind == wire.TRANSCRIPTION_DELTA:
                delta = event.get("delta")
                if delta and isinstance(delta, str) and item not in attempt.finals:
                    attempt.texts[item] = attempt.texts.get(item, "") + delta
                    self._emit_new(attempt.text())
                continue
            if kind == wire.COMMITTED:
                attempt.order.append(item)
            elif kind == wire.TRANSCRIPTION_COMPLETED:
                transcript = event.get("transcript")
                attempt.finals[item] = transcript if isinstance(transcript, str) else ""
                self._answered_commit(attempt, timed=True)
                self._emit_new(attempt.text())
            elif kind == wire.TRANSCRIPTION_FAILED:
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
                    self._answered_commit(attempt, timed=False)
                elif code == "session_expired":
                    raise BridgeError(
                        ErrorCode.UPSTREAM_UNAVAILABLE, "transcription session expired"
                    )
                elif attempt.commits:
                    raise upstream.from_realtime_error(error, WHAT)
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

    def _answered_commit(self, attempt: _Attempt, *, timed: bool) -> None:
        """One more commit of ``attempt`` answered; a transcript's finalize is timed."""
        if attempt.answers < len(attempt.commit_times):
            if timed:
                since = attempt.commit_times[attempt.answers]
                self._engine.finalize.record(asyncio.get_running_loop().time() - since)
            attempt.answers += 1
        attempt.changed.set()

    def _emit_new(self, text: str) -> None:
        """Pass on the part of ``text`` not yet given out (after a replay, only new text)."""
        if len(text) > len(self._emitted) and text.startswith(self._emitted):
            self._results.put_nowait(TranscriptDelta(text[len(self._emitted) :]))
            self._emitted = text
