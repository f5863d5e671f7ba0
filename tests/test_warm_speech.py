"""Realtime speech kept warm (issue 18), and the warm pools telling the fallback that OpenAI
is out (issue 14 item 2): the real server, driven as Home Assistant drives it, against the
fake OpenAI over real sockets; the fake records when each session connected and was
configured, and every client event."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.fake_openai import FakeOpenAI, RealtimeSessionRecord, default_synthesizer
from tests.harness import (
    READ_TIMEOUT,
    ha_synthesize,
    ha_synthesize_stream,
    ha_transcribe,
    make_settings,
    running_server,
)
from tests.utterances import eventually, piper_16k
from wyoming_openai.errors import BridgeError, ErrorCode
from wyoming_openai.fallback import LocalHold
from wyoming_openai.server import WyomingOpenAIServer
from wyoming_openai.stt.fallback import FallbackSttEngine
from wyoming_openai.tts.fallback import FallbackTtsEngine
from wyoming_openai.tts.realtime import RealtimeSpeechEngine

REALTIME = ("--tts-mode", "realtime")


def speech_sessions(fake: FakeOpenAI) -> list[RealtimeSessionRecord]:
    """Realtime conversation (speech) sessions, in connection order."""
    return [s for s in fake.realtime_sessions if "model" in s.query]


def voice_of(record: RealtimeSessionRecord) -> str | None:
    return ((record.session_config or {}).get("audio") or {}).get("output", {}).get("voice")


def configured_at(record: RealtimeSessionRecord) -> float:
    """When the fake sent ``session.updated`` (monotonic seconds)."""
    times = [
        at
        for event, at in zip(record.server_events, record.server_event_times, strict=True)
        if event["type"] == "session.updated"
    ]
    assert times, "the session was never configured"
    return times[0]


def client_types(record: RealtimeSessionRecord) -> list[str]:
    return [e["type"] for e in record.client_events]


def speech_engine(server: WyomingOpenAIServer) -> RealtimeSpeechEngine:
    engine = server.engines.tts
    assert isinstance(engine, RealtimeSpeechEngine)
    return engine


async def warm_ready(server: WyomingOpenAIServer, voice: str, opened: int = 1) -> None:
    """Until the server holds a ready session of ``voice``, after ``opened`` sessions
    opened ahead in all (a session joins the pool after it read ``session.updated``)."""
    pool = speech_engine(server).warm
    await eventually(lambda: pool.opened >= opened and pool.ready(voice) > 0, READ_TIMEOUT)


async def test_the_first_reply_after_start_up_speaks_on_a_session_opened_before_it(
    fake: FakeOpenAI,
) -> None:
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        await warm_ready(server, "alloy")
        requested_at = time.monotonic()
        result = await ha_synthesize(server.port, "Good morning.")
    assert result.error is None
    assert result.audio == default_synthesizer("Good morning.", "alloy")
    (session,) = speech_sessions(fake)
    assert session.connected_at < configured_at(session) < requested_at
    assert voice_of(session) == "alloy"
    assert session.spoken == ["Good morning."]
    # Configured once, ahead: the request itself only sent its text.
    assert client_types(session)[0] == "session.update"
    assert client_types(session).count("session.update") == 1


async def test_a_reply_after_the_session_limit_is_still_warm(fake: FakeOpenAI) -> None:
    """The service says sessions end 1-2 s after they open (``expires_at``; 60 minutes at
    OpenAI): the bridge renews the waiting session before then, so the next reply still
    finds one open and configured, and the service never had to end one."""
    fake.session_expires_in = 2.0
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        await warm_ready(server, "alloy")
        first = speech_sessions(fake)[0]
        await asyncio.wait_for(first.closed.wait(), READ_TIMEOUT)  # renewed: past its limit
        await warm_ready(server, "alloy", opened=2)
        requested_at = time.monotonic()
        result = await ha_synthesize(server.port, "Still here.")
        used = next(s for s in speech_sessions(fake) if s.spoken)
    assert result.error is None
    assert result.audio == default_synthesizer("Still here.", "alloy")
    assert used is not first
    assert used.connected_at < configured_at(used) < requested_at
    assert first.errors_sent == [] and first.close_code == 1000


async def test_a_second_voice_is_cold_once_then_warm(fake: FakeOpenAI) -> None:
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        await warm_ready(server, "alloy")
        cold_at = time.monotonic()
        cold = await ha_synthesize(server.port, "One.", voice="cedar")
        await warm_ready(server, "cedar")  # back from its first reply, ready for the next
        warm_at = time.monotonic()
        warm = await ha_synthesize(server.port, "Two.", voice="cedar")
        default = await ha_synthesize(server.port, "Three.")
    assert cold.error is None and warm.error is None and default.error is None
    assert warm.audio == default_synthesizer("Two.", "cedar")
    alloy, cedar = speech_sessions(fake)
    assert voice_of(alloy) == "alloy" and voice_of(cedar) == "cedar"
    assert cedar.connected_at > cold_at  # opened for the first request of the voice
    assert cedar.connected_at < warm_at  # and kept for the next one
    assert cedar.spoken == ["One.", "Two."]
    assert alloy.spoken == ["Three."]  # the default voice stayed warm meanwhile


async def test_the_least_recently_used_voice_is_closed_beyond_the_bound(
    fake: FakeOpenAI,
) -> None:
    settings = make_settings(fake.base_url, *REALTIME, "--tts-warm-voices", "2")
    async with running_server(settings) as server:
        assert server.port is not None
        await warm_ready(server, "alloy")
        await ha_synthesize(server.port, "One.", voice="cedar")
        await ha_synthesize(server.port, "Two.")  # alloy: used more recently than cedar
        await ha_synthesize(server.port, "Three.", voice="marin")  # a third voice
        alloy, cedar, marin = speech_sessions(fake)
        await asyncio.wait_for(cedar.closed.wait(), READ_TIMEOUT)
        await warm_ready(server, "marin")
        assert speech_engine(server).warm.keys == ["alloy", "marin"]
        assert not alloy.closed.is_set() and not marin.closed.is_set()
        again = await ha_synthesize(server.port, "Four.")
    assert cedar.close_code == 1000  # closed by the bridge
    assert [voice_of(s) for s in (alloy, cedar, marin)] == ["alloy", "cedar", "marin"]
    assert again.error is None and alloy.spoken == ["Two.", "Four."]


async def test_a_waiting_session_is_never_asked_for_a_response(fake: FakeOpenAI) -> None:
    """Nothing is billed for audio a warm session did not produce: while it waits (from
    start-up, and again after a reply) it gets no ``response.create``."""
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        await warm_ready(server, "alloy")
        (session,) = speech_sessions(fake)
        assert client_types(session) == ["session.update"]
        reply = await ha_synthesize_stream(server.port, ["Lights ", "are off."])
        await eventually(lambda: session.deleted_items, READ_TIMEOUT)  # its clean-up is done
        await warm_ready(server, "alloy")
        before = client_types(session)
        await fake.expire_realtime_sessions()  # renewal: a new warm session waits
        await warm_ready(server, "alloy", opened=2)
    assert reply.error is None
    assert before.count("response.create") == 1  # the reply's, and only it
    for record in speech_sessions(fake):
        assert client_types(record).count("response.create") == len(record.spoken)
    assert client_types(speech_sessions(fake)[-1]) == ["session.update"]


@pytest.mark.slow  # the local engines answer (real models)
async def test_pool_health_sends_the_next_requests_local_at_once_and_back(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenAI refuses every connection from start-up: the warm pools see it before any
    request, so the next command and reply go straight to the local engines (no attempt at
    OpenAI first); once the pools connect again, requests go to OpenAI again."""
    fake.reject_connections = True
    settings = make_settings(
        fake.base_url,
        *REALTIME,
        "--fallback",
        "local",
        "--stt-warm-sessions",
        "1",
        "--openai-max-retries",
        "0",
    )
    async with running_server(settings) as server:
        assert server.port is not None
        stt, tts = server.engines.stt, server.engines.tts
        assert isinstance(stt, FallbackSttEngine) and isinstance(tts, FallbackTtsEngine)
        await eventually(lambda: stt.standing_in and tts.standing_in, READ_TIMEOUT)
        with caplog.at_level(logging.WARNING):
            command = await ha_transcribe(server.port, piper_16k("Turn on the kitchen lights."))
            reply = await ha_synthesize(server.port, "The lights are on.")
        straight = [r.getMessage() for r in caplog.records]
        fake.reject_connections = False
        await eventually(lambda: not stt.standing_in and not tts.standing_in, READ_TIMEOUT)
        back = await ha_transcribe(server.port, piper_16k("Turn on the kitchen lights."))
        spoken = await ha_synthesize(server.port, "Welcome back.")
    assert command.error is None and "kitchen lights" in (command.transcript or "").lower()
    assert reply.error is None and reply.audio
    assert any(m.startswith("Transcribing locally: OpenAI failed") for m in straight)
    assert any(m.startswith("Piper speaks this piece") for m in straight)
    assert not any("transcribing this utterance locally" in m for m in straight)  # not tried
    assert back.error is None and back.transcript == "hello world"  # the fake's answer
    assert any(s.commits for s in fake.realtime_sessions)
    assert spoken.audio == default_synthesizer("Welcome back.", "alloy")


async def test_auto_mode_keeps_realtime_speech_warm_from_the_move(fake: FakeOpenAI) -> None:
    """Before the move nothing realtime is opened; the reply that finds the speech model
    retired moves to realtime, and from then on a session is kept open ahead of requests:
    one the service ends is replaced with no request asking for it."""
    fake.retired_models = {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"}
    settings = make_settings(fake.base_url, "--tts-realtime-move", "true")
    async with running_server(settings) as server:
        assert server.port is not None
        assert speech_sessions(fake) == []
        moved = await ha_synthesize(server.port, "Good morning.")
        (first,) = speech_sessions(fake)
        await eventually(lambda: first.deleted_items, READ_TIMEOUT)  # back in the pool
        await fake.expire_realtime_sessions()
        await eventually(lambda: len(speech_sessions(fake)) == 2, READ_TIMEOUT)
        spare = speech_sessions(fake)[1]
        await eventually(lambda: spare.events_of_type("session.updated"), READ_TIMEOUT)
        requested_at = time.monotonic()
        after = await ha_synthesize(server.port, "Good night.")
    assert moved.error is None and after.error is None
    assert first.spoken == ["Good morning."]
    assert spare.spoken == ["Good night."]  # no session opened for the request itself
    assert len(speech_sessions(fake)) == 2
    assert spare.connected_at < configured_at(spare) < requested_at


def test_a_pool_that_connects_again_ends_only_the_outage_it_saw() -> None:
    """The pool's success ends an outage the pool marked; one a request tripped (e.g. the
    service connects but never answers after the commit) is held for its time, or every
    command of that outage would wait for OpenAI's deadline again."""
    down = BridgeError(ErrorCode.UPSTREAM_UNAVAILABLE, "transcription failed: cannot reach")
    hold = LocalHold("transcription", 30.0)
    hold.mark_out(down)
    assert hold.covering and hold.current() is not None
    hold.mark_up()
    assert not hold.covering and hold.current() is None
    hold.trip(down)
    hold.mark_up()
    assert hold.covering
    off = LocalHold("transcription", 0.0)  # fallback_retry_after 0: OpenAI first, always
    off.mark_out(down)
    assert off.current() is None


@pytest.mark.slow  # Piper answers (real model)
async def test_the_transcription_pool_tells_speech_over_http_too(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Speech through ``/v1/audio/speech`` has no pool of its own: when the transcription
    pool cannot connect, the next reply is spoken by Piper at once, not after a try."""
    fake.reject_connections = True
    settings = make_settings(
        fake.base_url, "--fallback", "local", "--stt-warm-sessions", "1", "--tts-mode", "speech"
    )
    async with running_server(settings) as server:
        assert server.port is not None
        tts = server.engines.tts
        assert isinstance(tts, FallbackTtsEngine)
        await eventually(lambda: tts.standing_in, READ_TIMEOUT)
        with caplog.at_level(logging.WARNING):
            reply = await ha_synthesize(server.port, "The lights are on.")
    messages = [r.getMessage() for r in caplog.records]
    assert reply.error is None and reply.audio
    assert any(m.startswith("Piper speaks this piece") for m in messages)
    assert not any(m.startswith("OpenAI speech failed") for m in messages)  # not tried first
