"""Warm transcription sessions: opened before the request, renewed before they expire,
replaced when used, closed at shutdown (real server, fake OpenAI over real sockets)."""

from __future__ import annotations

import asyncio
import time

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient

from tests.fake_openai import FakeOpenAI, RealtimeSessionRecord
from tests.harness import READ_TIMEOUT, ha_transcribe, make_settings, running_server
from tests.utterances import eventually, tone
from wyoming_openai.audio import PCM_24K_MONO
from wyoming_openai.server import WyomingOpenAIServer
from wyoming_openai.stt.realtime import RealtimeSttEngine

WARM = ("--stt-warm-sessions", "1")


def updates(session: RealtimeSessionRecord) -> list[dict]:
    """The ``session`` objects of the client's ``session.update`` events, in order."""
    return [e["session"] for e in session.client_events if e["type"] == "session.update"]


async def configured(
    fake: FakeOpenAI, server: WyomingOpenAIServer, count: int
) -> RealtimeSessionRecord:
    """The ``count``-th realtime session (all of them warm ones here), once the server has
    opened ``count`` warm sessions and holds one ready: a session joins the server's pool
    only after it has read ``session.updated``, later than the fake sent it. The deadlines
    are hang guards."""
    engine = server.engines.stt
    assert isinstance(engine, RealtimeSttEngine)
    async with asyncio.timeout(READ_TIMEOUT):
        session = await fake.wait_for_realtime_session(count)
    await eventually(lambda: engine.warm.opened >= count and engine.warm.ready > 0, READ_TIMEOUT)
    return session


async def test_the_request_streams_into_a_session_opened_before_it(fake: FakeOpenAI) -> None:
    async with running_server(make_settings(fake.base_url, *WARM)) as server:
        assert server.port is not None
        warm = await configured(fake, server, 1)
        requested_at = time.monotonic()
        first = await ha_transcribe(server.port, tone(300, 0.5, 16000), language="en")
        replacement = await configured(fake, server, 2)
        second = await ha_transcribe(server.port, tone(300, 0.5, 16000), language="en")
        await configured(fake, server, 3)  # the replacement of the replacement

    assert first.transcript == second.transcript == "hello world"
    assert warm.connected_at < requested_at
    assert warm.first_audio_at is not None and warm.first_audio_at > requested_at
    assert len(warm.commits) == 1  # the first request's audio went into the warm session
    # It was opened with the configured defaults; Home Assistant's language was set on the
    # open connection (no new connect)...
    assert [u["audio"]["input"]["transcription"].get("languages") for u in updates(warm)] == [
        None,
        ["en"],
    ]
    # ...and the replacement was opened with it, so the second request needed no update.
    assert len(replacement.commits) == 1
    assert [u["audio"]["input"]["transcription"]["languages"] for u in updates(replacement)] == [
        ["en"]
    ]
    assert len(fake.realtime_sessions) == 3  # two used, one spare left at shutdown


async def test_the_first_16k_chunk_reaches_the_service_before_the_second_is_sent(
    fake: FakeOpenAI,
) -> None:
    """Home Assistant's first 10 ms chunk (16 kHz, resampled to 24 kHz) is not held back by
    the resampler's blocks nor by batching: audio reaches the service with nothing more sent."""
    async with running_server(make_settings(fake.base_url, *WARM)) as server:
        assert server.port is not None
        warm = await configured(fake, server, 1)
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            first_chunk = tone(300, 0.01, 16000)
            await client.write_event(
                AudioChunk(rate=16000, width=2, channels=1, audio=first_chunk).event()
            )
            await eventually(lambda: len(warm.audio) > 0)
    # About the first 4 ms of 24 kHz audio (the rest waits for the filter's look-ahead).
    assert len(warm.audio) >= PCM_24K_MONO.bytes_for_ms(3)


async def test_names_and_terms_are_set_on_the_warm_session(fake: FakeOpenAI) -> None:
    request = Transcribe(language="en", transcript_names=["Zoë"], transcript_terms=["scene"])
    async with running_server(make_settings(fake.base_url, *WARM)) as server:
        assert server.port is not None
        warm = await configured(fake, server, 1)
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000), transcribe=request)
    assert result.transcript == "hello world"
    assert len(warm.commits) == 1
    assert updates(warm)[-1]["audio"]["input"]["transcription"]["keywords"] == ["Zoë", "scene"]


async def test_warm_sessions_are_renewed_before_they_expire(fake: FakeOpenAI) -> None:
    """The service says sessions end 1-2 s after they open (``expires_at`` in whole
    seconds; 60 minutes at OpenAI): each warm one is closed and replaced by the bridge
    before then, and the spare works afterwards. The fake keeps each session open far
    longer, so the renewal is the bridge's doing, whenever the event loop gets to it."""
    fake.session_expires_in = 2.0
    async with running_server(make_settings(fake.base_url, *WARM)) as server:
        assert server.port is not None
        first = await configured(fake, server, 1)
        await configured(fake, server, 3)  # renewed twice
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000))
        assert result.transcript == "hello world"
        await asyncio.wait_for(first.closed.wait(), READ_TIMEOUT)

    assert first.errors_sent == []  # the service never had to end it
    assert first.close_code == 1000  # closed by the bridge, cleanly
    assert first.commits == []


async def test_a_warm_session_the_service_ends_is_replaced(fake: FakeOpenAI) -> None:
    """The service ends the waiting session (``session_expired`` and a close): a new one
    is opened at once, and the next request streams into it."""
    async with running_server(make_settings(fake.base_url, *WARM)) as server:
        assert server.port is not None
        first = await configured(fake, server, 1)
        await fake.expire_realtime_sessions()
        spare = await configured(fake, server, 2)
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000), language=None)
        await configured(fake, server, 3)  # the spare's replacement
    assert [e["code"] for e in first.errors_sent] == ["session_expired"]
    assert first.commits == []
    assert result.transcript == "hello world"
    assert len(spare.commits) == 1
    assert len(fake.realtime_sessions) == 3  # the spare was used and replaced


async def test_shutdown_closes_the_warm_sessions(fake: FakeOpenAI) -> None:
    async with running_server(make_settings(fake.base_url, "--stt-warm-sessions", "2")) as server:
        assert server.port is not None
        await configured(fake, server, 2)
    for session in fake.realtime_sessions:
        await asyncio.wait_for(session.closed.wait(), 5)
        assert session.close_code == 1000
    assert len(fake.realtime_sessions) == 2


async def test_a_service_that_refuses_warm_sessions_does_not_stop_requests(
    fake: FakeOpenAI,
) -> None:
    """While no warm session can be opened, each request connects (and fails) on its own
    with the usual error; once the service is back, the spare is opened again."""
    fake.reject_connections = True
    settings = make_settings(
        fake.base_url, *WARM, "--openai-connect-timeout", "0.5", "--openai-timeout", "2"
    )
    async with running_server(settings) as server:
        assert server.port is not None
        failed = await ha_transcribe(server.port, tone(300, 0.5, 16000))
        fake.reject_connections = False
        ok = await ha_transcribe(server.port, tone(300, 0.5, 16000))
    assert failed.error is not None and failed.error.code == "upstream-unavailable"
    assert ok.transcript == "hello world"
