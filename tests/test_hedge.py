"""Hedged requests: an overdue OpenAI answer is raced by the next option, never waited out.

The fake OpenAI server stalls one realtime session after its commit, one speech request
before its first byte, or hangs every handshake; the client, driven as Home Assistant
drives it, gets exactly one right answer from a fresh session or request (or, with
``fallback: local``, from the local engines), and the fake sees the loser closed. A
healthy run starts no second session or request.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator

import pytest

from tests import speech
from tests.fake_openai import FakeOpenAI, default_synthesizer
from tests.harness import (
    fallback_settings,
    ha_synthesize,
    ha_synthesize_stream,
    ha_transcribe,
    make_settings,
    running_server,
)
from tests.utterances import command, eventually, tone, use_whisper
from wyoming_openai import metrics
from wyoming_openai.audio import PCM_24K_MONO
from wyoming_openai.config import Settings
from wyoming_openai.config_sources import load_settings
from wyoming_openai.errors import BridgeError, ConfigError, ErrorCode
from wyoming_openai.hedge import HedgedStream, LatencyTracker

TEXT = "Turn on the kitchen lights."
REPLY = ["The garage door ", "is open. Shall I ", "close it?"]

HEDGE = "--openai-hedge"
"""Hedging on (``make_settings`` turns it off for the other tests)."""

QUICK_HEDGE = (HEDGE, "--openai-hedge-floor", "0.3", "--openai-hedge-ceiling", "0.6")
"""Overdue after 0.3-0.6 s (the defaults, 1-2.5 s, only make these tests slower); the
deadline (openai.timeout, 10 s) is far away, so only a hedge answers in time."""


def hedge_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "overdue" in r.getMessage()]


def hedges_counted(path: str) -> float:
    """``wyoming_openai_hedges_total{path=...}`` as /metrics shows it."""
    value = metrics.REGISTRY.get_sample_value("wyoming_openai_hedges_total", {"path": path})
    return value or 0.0


def without_hedging(settings: Settings) -> Settings:
    openai = settings.openai.model_copy(update={"hedge": False})
    return settings.model_copy(update={"openai": openai})


def utterance() -> bytes:
    """One second of tone: the fake transcribes it "hello world"."""
    return tone(440, 1.0, 16000)


# ----------------------------------------------------------------------- the tracker


def test_overdue_time_is_the_p99_of_healthy_answers_within_floor_and_ceiling() -> None:
    tracker = LatencyTracker("finalize", floor=1.0, ceiling=2.5)
    assert tracker.overdue_after() == 2.5  # nothing known yet: the ceiling
    for _ in range(50):
        tracker.record(0.3)
    assert tracker.overdue_after() == 1.0  # healthy answers stay under the floor
    tracker.record(1.7)
    assert tracker.overdue_after() == 1.7  # one slow answer among 51 is the p99
    for _ in range(100):
        tracker.record(0.2)  # it ages out of the window
    assert tracker.overdue_after() == 1.0
    tracker.record(9.0)
    assert tracker.overdue_after() == 1.0  # 1 in 100: beyond the p99
    tracker.record(9.0)
    assert tracker.overdue_after() == 2.5  # 2 in 100: the ceiling
    assert LatencyTracker("finalize", 1.0, 2.5, enabled=False).overdue_after() is None
    assert LatencyTracker.off("finalize").overdue_after() is None


def test_hedge_settings_are_checked() -> None:
    assert load_settings([], {}).openai.hedge is True  # on by default
    settings = load_settings([], {"WYOMING_OPENAI_OPENAI_HEDGE": "false"})
    assert settings.openai.hedge is False
    assert (settings.openai.hedge_floor, settings.openai.hedge_ceiling) == (1.0, 2.5)
    with pytest.raises(ConfigError, match="hedge_ceiling"):
        load_settings(["--openai-hedge-floor", "3", "--openai-hedge-ceiling", "2"], {})


class Stream:
    """An audio stream that waits ``delay`` seconds (or forever: None), then yields
    ``chunks`` or raises ``error``; records whether it was closed early."""

    def __init__(
        self, delay: float | None, chunks: list[bytes], error: BridgeError | None = None
    ) -> None:
        self.delay, self.chunks, self.error = delay, chunks, error
        self.started = self.closed = False

    async def audio(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            if self.delay is None:
                await asyncio.Event().wait()
            await asyncio.sleep(self.delay or 0.0)
            if self.error is not None:
                raise self.error
            for chunk in self.chunks:
                yield chunk
        finally:
            self.closed = True


async def play(primary: Stream, backup: Stream, after: float) -> tuple[HedgedStream, bytes]:
    race = HedgedStream(primary.audio(), backup.audio, after)
    return race, b"".join([chunk async for chunk in race.chunks()])


async def test_a_timely_stream_is_never_hedged() -> None:
    primary, backup = Stream(0.0, [b"ab", b"cd"]), Stream(0.0, [b"xx"])
    race, audio = await play(primary, backup, after=5.0)
    assert audio == b"abcd" and race.winner == "primary"
    assert not race.hedged and not backup.started


async def test_an_overdue_stream_loses_to_its_backup_and_is_closed() -> None:
    primary, backup = Stream(None, [b"never"]), Stream(0.0, [b"ab", b"cd"])
    race, audio = await play(primary, backup, after=0.05)
    assert audio == b"abcd" and race.winner == "backup" and race.hedged
    assert primary.closed  # the loser's request is released at once


async def test_a_failure_before_the_overdue_time_is_not_hedged() -> None:
    error = BridgeError(ErrorCode.UPSTREAM_UNAVAILABLE, "refused")
    primary, backup = Stream(0.0, [], error), Stream(0.0, [b"xx"])
    with pytest.raises(BridgeError, match="refused"):
        await play(primary, backup, after=5.0)
    assert not backup.started  # a failure is the caller's to handle (the fallback)


async def test_an_overdue_stream_that_fails_leaves_the_race_to_the_backup() -> None:
    error = BridgeError(ErrorCode.UPSTREAM_UNAVAILABLE, "dropped")
    primary, backup = Stream(0.2, [], error), Stream(0.4, [b"ab"])
    race, audio = await play(primary, backup, after=0.05)
    assert audio == b"ab" and race.winner == "backup" and "primary" in race.errors


# ----------------------------------------------------------------------- speech to text


async def test_a_stalled_session_is_raced_by_a_fresh_one_and_closed(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """The session stalls at its commit (the next one is fine): a fresh session replays
    the utterance and answers; the stalled one is closed; one transcript reaches the
    client."""
    fake.stall_after_commit = 1
    hedges_before = hedges_counted("transcription finalize")
    async with running_server(make_settings(fake.base_url, *QUICK_HEDGE)) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, utterance())
        stalled, fresh = fake.realtime_sessions
        await asyncio.wait_for(stalled.closed.wait(), 5)  # the loser's WebSocket is closed
    assert hedges_counted("transcription finalize") == hedges_before + 1  # on /metrics
    assert result.error is None
    assert result.transcript == "hello world"
    assert result.types.count("transcript") == 1
    assert "".join(e.data["text"] for e in result.events if e.type == "transcript-chunk") == (
        "hello world"
    )  # deltas once
    assert stalled.stalled and not fresh.stalled
    assert bytes(fresh.audio) == bytes(stalled.audio)  # the whole utterance, replayed
    assert [len(c) for c in fresh.commits] == [len(fresh.audio)]
    (line,) = hedge_lines(caplog)
    assert "transcription finalize overdue" in line and "fresh session" in line


@pytest.mark.slow
async def test_a_stalled_session_gives_the_right_words(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Real speech (Piper, transcribed by Whisper in the fake), paced in real time so the
    commit is speculative (before audio-stop): the fresh session's transcript is right."""
    use_whisper(fake)
    fake.stall_after_commit = 1
    async with running_server(make_settings(fake.base_url, *QUICK_HEDGE)) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, command(TEXT), realtime=True)
    assert result.error is None
    assert speech.normalize_text(result.transcript or "") == speech.normalize_text(TEXT)
    assert len(fake.realtime_sessions) == 2 and fake.realtime_sessions[0].stalled
    assert len(hedge_lines(caplog)) == 1


async def test_without_hedging_a_stalled_session_waits_for_the_deadline(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.stall_after_commit = 1
    settings = make_settings(fake.base_url, *QUICK_HEDGE, "--openai-timeout", "1.5")
    async with running_server(without_hedging(settings)) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, utterance())
    assert result.error is not None and result.error.code == "timeout"
    assert len(fake.realtime_sessions) == 1
    assert hedge_lines(caplog) == []


async def test_refused_connections_are_a_failure_not_a_hedge_and_recovery_is_seen(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal is no delay: it is reported (fallback none) without waiting to be
    overdue; once the service takes connections again, OpenAI answers."""
    fake.reject_connections = True
    settings = make_settings(fake.base_url, *QUICK_HEDGE, "--openai-max-retries", "0")
    async with running_server(settings) as server:
        assert server.port is not None
        refused = await ha_transcribe(server.port, utterance())
        fake.reject_connections = False
        recovered = await ha_transcribe(server.port, utterance())
    assert refused.error is not None and refused.error.code == "upstream-unavailable"
    assert recovered.error is None and recovered.transcript == "hello world"
    assert hedge_lines(caplog) == []


async def test_a_healthy_service_is_never_hedged(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Default settings: every utterance one session, every piece one speech request."""
    fake.finalize_delay = 0.15  # a healthy service's finalize
    fake.tts_first_byte_delay = 0.3
    settings = make_settings(fake.base_url, HEDGE, "--tts-mode", "speech")
    async with running_server(settings) as server:
        assert server.port is not None
        for _ in range(3):
            result = await ha_transcribe(server.port, utterance())
            assert result.transcript == "hello world"
        reply = await ha_synthesize_stream(server.port, REPLY)
        finalize = server.engines.stt.finalize  # type: ignore[attr-defined]
        first_byte = server.engines.tts.first_byte  # type: ignore[attr-defined]
    assert reply.error is None
    assert len(fake.realtime_sessions) == 3
    assert len(fake.speech_requests) == 2  # two sentences
    assert hedge_lines(caplog) == []
    assert finalize.hedges == first_byte.hedges == 0
    assert finalize.overdue_after() == first_byte.overdue_after() == 1.0  # the floor


# ----------------------------------------------------------------------- text to speech


async def test_a_stalled_speech_request_is_raced_by_a_fresh_one_and_closed(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.speech_stalls = 1
    hedges_before = hedges_counted("speech first byte")
    settings = make_settings(fake.base_url, "--tts-mode", "speech", *QUICK_HEDGE)
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_synthesize(server.port, TEXT)
        stalled, fresh = fake.speech_streams
        await eventually(lambda: stalled.aborted)  # the loser's request is closed
    assert hedges_counted("speech first byte") == hedges_before + 1  # on /metrics
    assert result.error is None
    assert result.audio == default_synthesizer(TEXT, "alloy")  # once, whole
    assert result.types.count("audio-start") == 1
    assert stalled.stalled and stalled.first_byte_at is None
    assert fresh.completed
    (line,) = hedge_lines(caplog)
    assert "speech first byte overdue" in line and "a fresh request" in line


async def test_without_hedging_a_stalled_speech_request_waits_for_the_deadline(
    fake: FakeOpenAI,
) -> None:
    fake.speech_stalls = 1
    settings = make_settings(
        fake.base_url,
        "--tts-mode",
        "speech",
        "--openai-timeout",
        "1",
        "--openai-max-retries",
        "0",
        *QUICK_HEDGE,
    )
    async with running_server(without_hedging(settings)) as server:
        assert server.port is not None
        result = await ha_synthesize(server.port, TEXT)
    assert result.error is not None and result.error.code == "timeout"
    assert len(fake.speech_streams) == 1


# ----------------------------------------------------------------------- with fallback: local


def hedged_fallback_settings(fake: FakeOpenAI, *argv: str) -> Settings:
    return fallback_settings(fake, *QUICK_HEDGE, *argv)


@pytest.mark.slow
async def test_a_hung_handshake_is_answered_locally_then_openai_again(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """The connect itself hangs: the local transcript answers, OpenAI counts as out (the
    next command goes local without a handshake), and once OpenAI is back it answers."""
    use_whisper(fake)
    fake.hang_handshake = True
    settings = hedged_fallback_settings(fake, "--fallback-retry-after", "3")
    async with running_server(settings) as server:
        assert server.port is not None
        stt = server.engines.stt
        first = await ha_transcribe(server.port, command(TEXT))
        handshakes = fake.hung_handshakes
        second = await ha_transcribe(server.port, command("Lock the front door."))
        assert fake.hung_handshakes == handshakes  # straight to the local engine
        fake.hang_handshake = False  # OpenAI recovers, and answers at once
        fake.transcriber = None  # "hello world": OpenAI's answer, not the local words
        await eventually(lambda: not stt.standing_in, 10)  # type: ignore[attr-defined]
        third = await ha_transcribe(server.port, command("Dim the bedroom lights."))
    assert third.error is None and third.transcript == "hello world"
    for result, text in ((first, TEXT), (second, "Lock the front door.")):
        assert result.error is None
        assert result.types.count("transcript") == 1
        assert speech.normalize_text(result.transcript or "") == speech.normalize_text(text)
    assert handshakes >= 1
    assert len(fake.realtime_sessions) == 1  # the third command, on OpenAI
    lines = hedge_lines(caplog)
    assert any("transcribing locally in parallel" in line for line in lines)
    assert any("the local transcript came first" in line for line in lines)


@pytest.mark.slow
async def test_a_stalled_session_with_fallback_races_both(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """One stalled session, fallback local: a fresh session and the local engine both
    start; one right transcript reaches the client, the stalled session is closed."""
    use_whisper(fake)
    fake.stall_after_commit = 1
    async with running_server(hedged_fallback_settings(fake)) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, command(TEXT))
        stalled = fake.realtime_sessions[0]
        await asyncio.wait_for(stalled.closed.wait(), 5)
    assert result.error is None
    assert result.types.count("transcript") == 1
    assert speech.normalize_text(result.transcript or "") == speech.normalize_text(TEXT)
    lines = hedge_lines(caplog)
    assert any("fresh session" in line for line in lines)
    assert any("transcribing locally in parallel" in line for line in lines)


@pytest.mark.slow
async def test_a_hanging_speech_service_is_raced_by_piper(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Every speech request hangs: Piper speaks the reply (one format, right words), the
    hung requests are closed, and the later sentences go to Piper at once."""
    fake.speech_stalls = 1000
    async with running_server(hedged_fallback_settings(fake)) as server:
        assert server.port is not None
        result = await ha_synthesize_stream(server.port, REPLY)
        await eventually(lambda: all(s.aborted for s in fake.speech_streams))
    assert result.error is None
    assert result.types.count("audio-start") == 1
    assert result.formats == {(24000, 2, 1)}
    heard = await asyncio.to_thread(speech.transcribe_speech, result.audio, PCM_24K_MONO.rate)
    assert speech.normalize_text(heard) == speech.normalize_text("".join(REPLY))
    assert any("Piper spoke this piece" in line for line in hedge_lines(caplog))
    assert 1 <= len(fake.speech_streams) <= 4  # the first sentence (and its fresh retry)


def test_tracker_floor_keeps_healthy_latencies_unhedged() -> None:
    """The default floor is above the slowest healthy finalize (450 ms) and first byte."""
    settings = load_settings([], {})
    tracker = LatencyTracker.from_settings("finalize", settings.openai)
    for seconds in (0.15, 0.45, 0.7):
        tracker.record(seconds)
    after = tracker.overdue_after()
    assert after is not None and after >= 0.7 and not math.isinf(after)


@pytest.fixture(autouse=True)
def _warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
