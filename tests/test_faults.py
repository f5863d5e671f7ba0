"""Faults on the OpenAI side: the utterance is never lost, nobody waits forever.

Each fault is injected by the fake OpenAI server; the client is driven in Home
Assistant's order with real speech paced in real time, so a replayed utterance must still
be transcribed word for word.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests import speech
from tests.fake_openai import FakeOpenAI, default_synthesizer
from tests.harness import (
    describe,
    ha_synthesize,
    ha_synthesize_stream,
    ha_transcribe,
    make_settings,
    running_server,
)
from tests.utterances import eventually, piper_16k, tone, use_whisper
from wyoming_openai.stt.realtime import APPEND_BATCH_MS

TEXT = "Turn on the kitchen lights."

FAST_DEADLINES = ("--openai-connect-timeout", "0.5", "--openai-timeout", "2")


async def test_connection_dropped_mid_utterance_is_replayed(fake: FakeOpenAI, port: int) -> None:
    """The WebSocket drops after 0.3 s of speech (appends carry APPEND_BATCH_MS each); the
    bridge reconnects and replays the utterance from its start: the transcript is still
    right."""
    use_whisper(fake)
    fake.drop_after_appends = 300 // APPEND_BATCH_MS

    async def heal() -> None:
        first = await fake.wait_for_realtime_session(1)
        await first.closed.wait()
        fake.drop_after_appends = None

    healer = asyncio.create_task(heal())
    pcm = piper_16k(TEXT)
    result = await ha_transcribe(port, pcm, realtime=True)
    await asyncio.wait_for(healer, 5)

    assert result.error is None
    assert speech.normalize_text(result.transcript or "") == speech.normalize_text(TEXT)
    first, second = fake.realtime_sessions[:2]
    assert first.commits == []
    (commit,) = second.commits
    assert len(commit) >= len(first.audio)  # the replay starts at the utterance's start
    assert bytes(second.audio).startswith(bytes(first.audio))


async def test_service_unreachable_at_first_then_back(fake: FakeOpenAI, port: int) -> None:
    """Connections are refused (503) while the person starts speaking: the audio is kept
    and sent once a session can be opened."""
    use_whisper(fake)
    fake.reject_connections = True

    async def heal() -> None:
        await eventually(lambda: fake.rejected_requests >= 2, 30)  # refused, and retried
        fake.reject_connections = False

    healer = asyncio.create_task(heal())
    result = await ha_transcribe(port, piper_16k(TEXT), realtime=True)
    await healer
    assert result.error is None
    assert speech.normalize_text(result.transcript or "") == speech.normalize_text(TEXT)


async def test_service_down_for_good_is_a_clear_error_after_audio_stop(
    fake: FakeOpenAI,
) -> None:
    fake.reject_connections = True
    async with running_server(make_settings(fake.base_url, *FAST_DEADLINES)) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000))
        assert result.error is not None
        assert result.error.code == "upstream-unavailable"
        await describe(server.port)


async def test_hung_service_times_out_with_an_error_and_frees_the_connection(
    fake: FakeOpenAI,
) -> None:
    """The WebSocket is accepted but nothing is ever answered."""
    fake.hang = True
    async with running_server(make_settings(fake.base_url, *FAST_DEADLINES)) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000))
        assert result.error is not None
        assert result.error.code == "timeout"
        elapsed = (time.monotonic() - result.audio_stop_at) if result.transcript_at is None else 0
        print(f"\nhung service: error {elapsed:.2f} s after audio-stop")
        await describe(server.port)
    for session in fake.realtime_sessions:  # every upstream socket was closed by us
        await asyncio.wait_for(session.closed.wait(), 5)


async def test_session_expiry_mid_utterance_is_replayed(fake: FakeOpenAI, port: int) -> None:
    use_whisper(fake)

    async def expire_once_audio_flows() -> None:
        first = await fake.wait_for_realtime_session(1)
        await eventually(lambda: len(first.audio) > 0, 30)
        await fake.expire_realtime_sessions()

    healer = asyncio.create_task(expire_once_audio_flows())
    result = await ha_transcribe(port, piper_16k(TEXT), realtime=True)
    await asyncio.wait_for(healer, 5)
    assert result.error is None
    assert speech.normalize_text(result.transcript or "") == speech.normalize_text(TEXT)
    assert [e["code"] for e in fake.realtime_sessions[0].errors_sent] == ["session_expired"]


async def test_speech_cut_off_mid_stream_ends_the_reply_cleanly(
    fake: FakeOpenAI, port: int
) -> None:
    """The speech body breaks after 20,000 bytes: the client gets the audio that was
    spoken, then audio-stop and synthesize-stopped, and is never left waiting."""
    fake.speech_fail_after_bytes = 20_000
    text = "A reply long enough to be cut off somewhere in the middle."
    result = await ha_synthesize_stream(port, [text])
    assert result.types[0] == "audio-start"
    assert result.types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert "error" not in result.types
    spoken = default_synthesizer(text, "alloy")
    assert len(result.audio) % 2 == 0
    assert result.audio[:19_200] == spoken[:19_200]  # what was spoken arrived intact


async def test_speech_failing_before_any_audio_is_an_error(fake: FakeOpenAI, port: int) -> None:
    fake.speech_fail_after_bytes = 1
    fake.tts_chunk_bytes = 1
    result = await ha_synthesize(port, "Hello.")
    assert result.types == ["error"]
    assert result.error is not None and result.error.code == "upstream-unavailable"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [(401, "invalid_api_key", "auth-failed"), (429, "insufficient_quota", "quota-exceeded")],
)
async def test_permanent_failures_are_not_retried(
    fake: FakeOpenAI, status: int, code: str, expected: str
) -> None:
    """HTTP transcription: 401 and ``insufficient_quota`` answer at once, one request."""
    fake.http_errors = [(status, code)] * 5
    settings = make_settings(fake.base_url, "--stt-mode", "http")
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000))
    assert result.error is not None
    assert result.error.code == expected
    assert len(fake.http_errors) == 4  # exactly one request was made


async def test_transient_http_failures_are_retried(fake: FakeOpenAI) -> None:
    fake.http_errors = [(500, "server_error"), (429, "rate_limit_exceeded")]
    settings = make_settings(fake.base_url, "--stt-mode", "http")
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000))
    assert result.error is None
    assert result.transcript == "hello world"
    assert fake.http_errors == []


async def test_speech_retries_a_transient_failure_before_any_audio(
    fake: FakeOpenAI, port: int
) -> None:
    fake.http_errors = [(503, "server_error")]
    result = await ha_synthesize(port, "Hello.")
    assert result.error is None
    assert result.audio == default_synthesizer("Hello.", "alloy")
    assert fake.http_errors == []
    quota = [(429, "insufficient_quota")] * 3
    fake.http_errors = list(quota)
    failed = await ha_synthesize(port, "Hello.")
    assert failed.error is not None and failed.error.code == "quota-exceeded"
    assert len(fake.http_errors) == 2  # not retried
