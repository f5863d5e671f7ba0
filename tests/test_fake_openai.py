"""The fake OpenAI server is faithful: driven here by the real ``openai`` SDK as the client.

Tests named ``test_real_speech_*`` use real speech (Piper TTS, Whisper STT), offline; the models
load once per test session (module-level caches in ``tests/speech.py``).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import wave
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import openai
import pytest
import websockets
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent

from tests import speech
from tests.fake_openai import (
    DEFAULT_API_KEY,
    FakeOpenAI,
    default_synthesizer,
    split_deltas,
)

TIMEOUT = 10.0
TRANSCRIPTION_QUERY = {"intent": "transcription"}
KITCHEN = "Turn on the kitchen lights."

GA_SESSION: dict[str, Any] = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": ""},
            "turn_detection": None,
            "noise_reduction": {"type": "near_field"},
        }
    },
}


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeOpenAI]:
    """A running fake (this module checks ``validation_failures`` explicitly per test)."""
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def client(fake_api: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    """The real SDK pointed at the fake, without retries."""
    sdk = AsyncOpenAI(api_key=DEFAULT_API_KEY, base_url=fake_api.base_url, max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


@pytest.fixture(scope="session")
def kitchen_24k() -> bytes:
    """Piper speaking "Turn on the kitchen lights." as 24 kHz s16le mono (made once)."""
    pcm, rate = speech.synthesize_speech(KITCHEN)
    return speech.resample_pcm(pcm, rate, 24000)


# ------------------------------------------------------------------------------- helpers


def tone(ms: int, rate: int = 24000, freq: float = 300.0) -> bytes:
    """``ms`` milliseconds of a sine at ``rate`` Hz, s16le mono."""
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2").tobytes()


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """A 16-bit mono WAV file around ``pcm``."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return out.getvalue()


async def recv(conn: AsyncRealtimeConnection) -> Any:
    async with asyncio.timeout(TIMEOUT):
        return await conn.recv()


async def recv_until(conn: AsyncRealtimeConnection, event_type: str) -> list[Any]:
    """All events up to and including the first of ``event_type``."""
    events = []
    while True:
        event = await recv(conn)
        events.append(event)
        if event.type == event_type:
            return events


async def append_audio(conn: AsyncRealtimeConnection, pcm: bytes, chunk_ms: int = 100) -> None:
    size = 24000 * 2 * chunk_ms // 1000
    for i in range(0, len(pcm), size):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + size]).decode())


async def open_configured(conn: AsyncRealtimeConnection, session: dict[str, Any]) -> None:
    created = await recv(conn)
    assert created.type == "session.created"
    await conn.session.update(session=session)  # type: ignore[arg-type]
    updated = await recv(conn)
    assert updated.type == "session.updated", updated


def transcription_session(**transcription: Any) -> dict[str, Any]:
    session = json.loads(json.dumps(GA_SESSION))
    session["audio"]["input"]["transcription"] = transcription
    return session


# ------------------------------------------------------------------------------- realtime


async def test_ga_transcription_session(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    audio = tone(300)
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        created = await recv(conn)
        assert created.type == "session.created"
        assert created.session.type == "transcription"
        raw_session = fake_api.realtime_sessions[0].server_events[0]["session"]
        assert raw_session["object"] == "realtime.transcription_session"
        assert raw_session["id"].startswith("sess_")

        await conn.session.update(session=GA_SESSION)  # type: ignore[arg-type]
        updated = await recv(conn)
        assert updated.type == "session.updated"
        transcription = updated.session.audio.input.transcription
        assert transcription.model == "gpt-4o-transcribe"
        assert updated.session.audio.input.turn_detection is None

        await append_audio(conn, audio)
        await conn.input_audio_buffer.commit()
        events = await recv_until(conn, "conversation.item.input_audio_transcription.completed")

    committed = events[0]
    assert committed.type == "input_audio_buffer.committed"
    assert committed.previous_item_id is None
    deltas = [e for e in events if e.type.endswith("transcription.delta")]
    completed = events[-1]
    assert [e.type for e in events[1:-1]] == [d.type for d in deltas]
    assert all(e.item_id == committed.item_id and e.content_index == 0 for e in events[1:])
    assert "".join(d.delta for d in deltas) == completed.transcript == "hello world"
    assert completed.usage.type == "tokens"
    assert completed.usage.total_tokens == completed.usage.input_tokens + (
        completed.usage.output_tokens
    )

    record = fake_api.realtime_sessions[0]
    await asyncio.wait_for(record.closed.wait(), TIMEOUT)
    assert record.query == {"intent": "transcription"}
    assert record.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert "openai-beta" not in record.headers
    assert record.session_config == GA_SESSION
    assert bytes(record.audio) == audio
    assert record.commits == [audio]
    assert record.transcripts == ["hello world"]
    assert record.first_audio_at is not None and record.first_audio_at >= record.connected_at
    assert record.close_code == 1000
    assert fake_api.validation_failures == []


async def test_several_commits_stay_in_order(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.transcriber = lambda pcm, language, prompt: f"{len(pcm)} bytes in {language}"
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, GA_SESSION)
        for ms in (200, 300, 400):
            await append_audio(conn, tone(ms))
            await conn.input_audio_buffer.commit()
        events: list[Any] = []
        while len([e for e in events if e.type.endswith(".completed")]) < 3:
            events.append(await recv(conn))

    committed = [e for e in events if e.type == "input_audio_buffer.committed"]
    completed = [e for e in events if e.type.endswith(".completed")]
    assert [c.previous_item_id for c in committed] == [None] + [c.item_id for c in committed[:2]]
    assert [c.item_id for c in completed] == [c.item_id for c in committed]
    assert [c.transcript for c in completed] == [
        "9600 bytes in en",
        "14400 bytes in en",
        "19200 bytes in en",
    ]
    assert fake_api.validation_failures == []


async def test_real_speech_realtime_round_trip(
    fake_api: FakeOpenAI, client: AsyncOpenAI, kitchen_24k: bytes
) -> None:
    fake_api.transcriber = speech.whisper_transcriber
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, GA_SESSION)
        await append_audio(conn, kitchen_24k, chunk_ms=40)
        await conn.input_audio_buffer.commit()
        events = await recv_until(conn, "conversation.item.input_audio_transcription.completed")

    completed = events[-1]
    deltas = "".join(e.delta for e in events if e.type.endswith("transcription.delta"))
    assert deltas == completed.transcript
    assert speech.normalize_text(completed.transcript) == speech.normalize_text(KITCHEN)
    assert fake_api.realtime_sessions[0].commits == [kitchen_24k]
    assert fake_api.validation_failures == []


async def test_beta_header_is_rejected_with_4000(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    async with client.realtime.connect(
        extra_query=TRANSCRIPTION_QUERY, extra_headers={"OpenAI-Beta": "realtime=v1"}
    ) as conn:
        error = await recv(conn)
        assert error.type == "error"
        assert error.error.code == "beta_api_shape_disabled"
        assert error.error.type == "invalid_request_error"
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
            await recv(conn)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    record = fake_api.realtime_sessions[0]
    await asyncio.wait_for(record.closed.wait(), TIMEOUT)
    assert record.close_code == 4000


async def test_beta_event_is_rejected_with_4000(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        assert (await recv(conn)).type == "session.created"
        await conn.send_raw(
            json.dumps(
                {
                    "type": "transcription_session.update",
                    "session": {"input_audio_format": "pcm16"},
                }
            )
        )
        error = await recv(conn)
        assert error.error.code == "beta_api_shape_disabled"
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
            await recv(conn)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    assert len(fake_api.validation_failures) == 1


async def test_model_query_is_rejected_for_transcription(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    async with client.realtime.connect(
        model="gpt-4o-transcribe", extra_query=TRANSCRIPTION_QUERY
    ) as conn:
        error = await recv(conn)
        assert error.type == "error"
        assert "model" in error.error.message
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await recv(conn)


async def test_bad_api_key_fails_the_handshake(fake_api: FakeOpenAI) -> None:
    sdk = AsyncOpenAI(api_key="sk-wrong-key-000000", base_url=fake_api.base_url, max_retries=0)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with sdk.realtime.connect(extra_query=TRANSCRIPTION_QUERY):
            pass
    response = refused.value.response
    assert response.status_code == 401
    assert json.loads(response.body)["error"]["code"] == "invalid_api_key"
    assert fake_api.realtime_sessions == []
    with pytest.raises(openai.AuthenticationError) as http_refused:
        await sdk.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi")
    assert http_refused.value.code == "invalid_api_key"
    await sdk.close()


async def test_short_commit_is_an_error_and_socket_stays_usable(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, GA_SESSION)
        await append_audio(conn, tone(50))
        await conn.input_audio_buffer.commit(event_id="evt_commit_1")
        error = await recv(conn)
        assert error.type == "error"
        assert error.error.code == "input_audio_buffer_commit_empty"
        assert error.error.event_id == "evt_commit_1"
        assert "only has 50.00ms of audio" in error.error.message
        # The 50 ms stay in the buffer: 60 more make a valid commit.
        await append_audio(conn, tone(60))
        await conn.input_audio_buffer.commit()
        events = await recv_until(conn, "conversation.item.input_audio_transcription.completed")
    assert events[0].type == "input_audio_buffer.committed"
    assert len(fake_api.realtime_sessions[0].commits[0]) == 110 * 48
    assert fake_api.validation_failures == []


async def test_empty_commit_reports_zero_ms(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, GA_SESSION)
        await append_audio(conn, tone(200))
        await conn.input_audio_buffer.clear()
        assert (await recv(conn)).type == "input_audio_buffer.cleared"
        await conn.input_audio_buffer.commit()
        error = await recv(conn)
    assert error.error.message == (
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
        "audio, but buffer only has 0.00ms of audio."
    )


async def test_unknown_field_is_an_error_event(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    session = json.loads(json.dumps(GA_SESSION))
    session["audio"]["input"]["sample_rate"] = 16000
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        assert (await recv(conn)).type == "session.created"
        await conn.send_raw(json.dumps({"type": "session.update", "session": session}))
        error = await recv(conn)
        assert error.type == "error"
        assert error.error.code == "unknown_parameter"
        assert error.error.param == "session.audio.input.sample_rate"
        # The socket stays open.
        await conn.input_audio_buffer.clear()
        assert (await recv(conn)).type == "input_audio_buffer.cleared"
    assert len(fake_api.validation_failures) == 1
    assert "sample_rate" in fake_api.validation_failures[0]


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        (
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
                },
            },
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        ({"type": "input_audio_buffer.append"}, "missing_required_parameter", "audio"),
        ({"type": "input_audio_buffer.append", "audio": 5}, "invalid_type", "audio"),
        ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "invalid_value", "audio"),
        ({"type": "input_audio_buffer.flush"}, "invalid_value", "type"),
        ({"type": "input_audio_buffer.commit", "item_id": "x"}, "unknown_parameter", "item_id"),
    ],
)
async def test_invalid_client_events(
    fake_api: FakeOpenAI, client: AsyncOpenAI, event: dict[str, Any], code: str, param: str
) -> None:
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        assert (await recv(conn)).type == "session.created"
        await conn.send_raw(json.dumps({**event, "event_id": "evt_bad"}))
        error = await recv(conn)
    assert (error.error.code, error.error.param, error.error.event_id) == (code, param, "evt_bad")
    assert len(fake_api.validation_failures) == 1


@pytest.mark.parametrize(
    ("transcription", "turn_detection", "code", "message_part"),
    [
        (
            {"model": "gpt-4o-transcribe", "languages": ["en"]},
            None,
            "unsupported_parameter",
            "languages",
        ),
        ({"model": "whisper-1", "keywords": ["lights"]}, None, "unsupported_parameter", "keywords"),
        ({"model": "gpt-transcribe", "language": "en"}, None, "unsupported_parameter", "languages"),
        ({"model": "gpt-4o-transcribe", "delay": "low"}, None, "unsupported_parameter", "delay"),
        ({"model": "gpt-realtime-whisper", "prompt": "x"}, None, "unsupported_parameter", "prompt"),
        (
            {"model": "gpt-live-transcribe"},
            {"type": "server_vad"},
            "invalid_value",
            "Turn detection is not supported",
        ),
        (
            {"model": "gpt-realtime-whisper"},
            {"type": "semantic_vad"},
            "invalid_value",
            "Turn detection is not supported",
        ),
        ({"model": "retired-model"}, None, "model_not_found", "retired-model"),
        ({"model": "missing-transcriber"}, None, "model_not_found", "does not exist"),
        ({"language": "en"}, None, "missing_required_parameter", "model"),
    ],
)
async def test_session_update_model_rules(
    fake_api: FakeOpenAI,
    client: AsyncOpenAI,
    transcription: dict[str, Any],
    turn_detection: dict[str, Any] | None,
    code: str,
    message_part: str,
) -> None:
    session = transcription_session(**transcription)
    session["audio"]["input"]["turn_detection"] = turn_detection
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        assert (await recv(conn)).type == "session.created"
        await conn.session.update(session=session)  # type: ignore[arg-type]
        error = await recv(conn)
    assert error.type == "error"
    assert error.error.code == code
    assert message_part in error.error.message
    record = fake_api.realtime_sessions[0]
    assert record.session_config == session
    assert record.effective_session is not None
    assert record.effective_session["audio"]["input"]["transcription"] is None  # unchanged
    assert fake_api.validation_failures == []


@pytest.mark.parametrize(
    "transcription",
    [
        {"model": "gpt-live-transcribe", "languages": ["en", "de"], "keywords": ["Hue"]},
        {"model": "gpt-transcribe", "languages": ["en"]},
        {"model": "gpt-realtime-whisper", "delay": "low", "language": "en"},
        {"model": "gpt-4o-mini-transcribe", "language": "en", "prompt": "home automation"},
    ],
)
async def test_session_update_accepted_per_model(
    fake_api: FakeOpenAI, client: AsyncOpenAI, transcription: dict[str, Any]
) -> None:
    calls: list[tuple[str | None, str | None]] = []

    def transcriber(pcm: bytes, language: str | None, prompt: str | None) -> str:
        calls.append((language, prompt))
        return "ok"

    fake_api.transcriber = transcriber
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, transcription_session(**transcription))
        await append_audio(conn, tone(100))
        await conn.input_audio_buffer.commit()
        events = await recv_until(conn, "conversation.item.input_audio_transcription.completed")
    usage = events[-1].usage
    assert usage.type == ("duration" if "whisper" in transcription["model"] else "tokens")
    language = transcription.get("language") or transcription["languages"][0]
    prompt = transcription.get("prompt") or ", ".join(transcription.get("keywords", [])) or None
    assert calls == [(language, prompt)]
    assert fake_api.validation_failures == []


async def test_transcription_is_off_until_configured(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        created = await recv(conn)
        assert created.session.audio.input.transcription is None
        await append_audio(conn, tone(200))
        await conn.input_audio_buffer.commit()
        assert (await recv(conn)).type == "input_audio_buffer.committed"
        await conn.session.update(session=GA_SESSION)  # type: ignore[arg-type]
        assert (await recv(conn)).type == "session.updated"
        await append_audio(conn, tone(200))
        await conn.input_audio_buffer.commit()
        events = await recv_until(conn, "conversation.item.input_audio_transcription.completed")
    record = fake_api.realtime_sessions[0]
    assert events[0].item_id == record.item_ids[1]
    assert record.transcripts == ["hello world"]


async def test_g711_input(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    session = json.loads(json.dumps(GA_SESSION))
    session["audio"]["input"]["format"] = {"type": "audio/pcmu"}
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, session)
        await conn.input_audio_buffer.append(audio=base64.b64encode(b"\xff" * 799).decode())
        await conn.input_audio_buffer.commit()
        assert (await recv(conn)).error.code == "input_audio_buffer_commit_empty"
        await conn.input_audio_buffer.append(audio=base64.b64encode(b"\xff").decode())
        await conn.input_audio_buffer.commit()
        await recv_until(conn, "conversation.item.input_audio_transcription.completed")
    record = fake_api.realtime_sessions[0]
    assert len(record.commits[0]) == 100 * 48  # 800 mu-law samples -> 2400 samples at 24 kHz
    assert fake_api.validation_failures == []


async def test_odd_append_is_flagged(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, GA_SESSION)
        await conn.input_audio_buffer.append(audio=base64.b64encode(b"\0" * 4801).decode())
        await conn.input_audio_buffer.clear()
        await recv(conn)
    assert len(fake_api.validation_failures) == 1
    assert "16-bit" in fake_api.validation_failures[0]


async def test_transcriber_failure_sends_failed_event(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    def broken(pcm: bytes, language: str | None, prompt: str | None) -> str:
        raise RuntimeError("model crashed")

    fake_api.transcriber = broken
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, GA_SESSION)
        await append_audio(conn, tone(200))
        await conn.input_audio_buffer.commit()
        events = await recv_until(conn, "conversation.item.input_audio_transcription.failed")
    assert events[-1].item_id == events[0].item_id
    assert "model crashed" in events[-1].error.message
    assert fake_api.validation_failures == []


async def test_finalize_delay(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.finalize_delay = 0.2
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, GA_SESSION)
        await append_audio(conn, tone(200))
        await conn.input_audio_buffer.commit()
        assert (await recv(conn)).type == "input_audio_buffer.committed"
        first = await recv(conn)
    assert first.type == "conversation.item.input_audio_transcription.delta"
    # When the fake sent them (the client's clock would add its own reading delays).
    record = fake_api.realtime_sessions[0]
    types = [event["type"] for event in record.server_events]
    committed_at = record.server_event_times[types.index("input_audio_buffer.committed")]
    delta_at = record.server_event_times[types.index(first.type)]
    assert delta_at - committed_at >= 0.2 - 0.001  # a timer may fire a clock tick early


async def test_realtime_without_model_or_intent_is_refused(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    """Conversation sessions (speech) are in ``tests/test_fake_realtime_speech.py``."""
    async with client.realtime.connect() as conn:
        error = await recv(conn)
        assert error.type == "error" and error.error.code == "missing_required_parameter"
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await recv(conn)


# ------------------------------------------------------------------------------- fault injection


async def test_drop_after_appends(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.drop_after_appends = 2
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, GA_SESSION)
        await append_audio(conn, tone(200))  # two appends of 100 ms
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as dropped:
            await recv(conn)
    assert dropped.value.rcvd is None  # no close frame: abnormal closure
    record = fake_api.realtime_sessions[0]
    await asyncio.wait_for(record.closed.wait(), TIMEOUT)
    assert record.close_code == 1006
    assert record.append_count == 2


async def test_reject_connections(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.reject_connections = True
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY):
            pass
    assert refused.value.response.status_code == 503
    with pytest.raises(openai.InternalServerError):
        await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi")


async def test_hang(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.hang = True
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await conn.input_audio_buffer.commit()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await conn.recv()
    assert fake_api.realtime_sessions[0].client_events == [{"type": "input_audio_buffer.commit"}]
    with pytest.raises(openai.APITimeoutError):
        await client.with_options(timeout=0.2).audio.speech.create(
            model="gpt-4o-mini-tts", voice="alloy", input="hi"
        )


async def test_session_expiry(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.session_max_duration = 0.1
    async with client.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        assert (await recv(conn)).type == "session.created"
        error = await recv(conn)
        assert error.error.code == "session_expired"
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await recv(conn)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_stop_closes_open_websockets(client: AsyncOpenAI) -> None:
    fake = FakeOpenAI()
    await fake.start()
    sdk = AsyncOpenAI(api_key=DEFAULT_API_KEY, base_url=fake.base_url, max_retries=0)
    async with sdk.realtime.connect(extra_query=TRANSCRIPTION_QUERY) as conn:
        await open_configured(conn, GA_SESSION)
        fake.finalize_delay = 60.0
        await append_audio(conn, tone(200))
        await conn.input_audio_buffer.commit()
        assert (await recv(conn)).type == "input_audio_buffer.committed"
        async with asyncio.timeout(TIMEOUT):
            await fake.stop()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await recv(conn)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert fake.realtime_sessions[0].closed.is_set()
    assert not [t for t in fake._tasks if not t.done()]
    await sdk.close()


# ------------------------------------------------------------------------------- /v1/audio/speech


async def test_speech_streams_synthesizer_bytes(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    text = "Hello there, kitchen."
    async with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="coral", input=text, response_format="pcm"
    ) as response:
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["x-request-id"].startswith("req_")
        body = b"".join([chunk async for chunk in response.iter_bytes()])
    assert body == default_synthesizer(text, "coral")
    assert len(body) == len(text) * 2400
    assert fake_api.speech_requests == [
        {"model": "gpt-4o-mini-tts", "voice": "coral", "input": text, "response_format": "pcm"}
    ]
    stream = fake_api.speech_streams[0]
    assert stream.completed and stream.bytes_sent == stream.total_bytes == len(body)
    assert fake_api.validation_failures == []


async def test_speech_pacing(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.tts_first_byte_delay = 0.15
    fake_api.tts_chunk_interval = 0.01
    fake_api.tts_chunk_bytes = 24001
    started = time.monotonic()
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice={"id": "voice_1234"},
        input="abcdefghijklmnopqrstuvwxyz",
        response_format="pcm",
    ) as response:
        sizes = [len(chunk) async for chunk in response.iter_bytes()]
    stream = fake_api.speech_streams[0]
    assert stream.first_byte_at is not None and stream.first_byte_at - started >= 0.14
    assert sum(sizes) == 26 * 2400
    assert stream.finished_at is not None
    assert stream.finished_at - stream.first_byte_at >= 0.02  # 3 chunks, 2 intervals


async def test_real_speech_tts_to_stt_round_trip(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.synthesizer = speech.piper_synthesizer
    async with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input=KITCHEN, response_format="pcm"
    ) as response:
        pcm = b"".join([chunk async for chunk in response.iter_bytes()])
    text = await asyncio.to_thread(speech.transcribe_speech, pcm, 24000)
    assert speech.normalize_text(text) == speech.normalize_text(KITCHEN)


async def test_speech_unknown_model_is_not_found(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.audio.speech.create(
            model="retired-model", voice="alloy", input="hi", response_format="pcm"
        )
    assert missing.value.code == "model_not_found"
    assert missing.value.type == "invalid_request_error"
    assert fake_api.validation_failures == []


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"speed": 4.5}, "speed"),
        ({"speed": 0.1}, "speed"),
        ({"voice": "robot"}, "voice"),
        ({"input": "x" * 4097}, "input"),
        ({"input": ""}, "input"),
        ({"instructions": "y" * 4097}, "instructions"),
        ({"model": "tts-1", "instructions": "calm"}, "instructions"),
        ({"response_format": "mp3"}, "response_format"),
        ({"response_format": "ogg"}, "response_format"),
    ],
)
async def test_speech_rejects_bad_requests(
    fake_api: FakeOpenAI, client: AsyncOpenAI, overrides: dict[str, Any], param: str
) -> None:
    request: dict[str, Any] = {
        "model": "gpt-4o-mini-tts",
        "voice": "alloy",
        "input": "hi",
        "response_format": "pcm",
        **overrides,
    }
    with pytest.raises(openai.BadRequestError) as bad:
        await client.audio.speech.create(**request)
    assert bad.value.param == param
    assert fake_api.speech_streams == []
    assert len(fake_api.validation_failures) == 1


async def test_speech_unknown_argument(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        await client.audio.speech.create(
            model="gpt-4o-mini-tts",
            voice="alloy",
            input="hi",
            response_format="pcm",
            extra_body={"sample_rate": 16000},
        )
    assert "Unrecognized request argument supplied: sample_rate" in bad.value.message


async def test_http_error_injection(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.http_errors = [(429, "rate_limit_exceeded"), (500, "server_error")]
    with pytest.raises(openai.RateLimitError) as limited:
        await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi")
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError):
        await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi")
    # With retries and a short Retry-After, the SDK gets through.
    fake_api.http_errors = [(429, "rate_limit_exceeded")]
    fake_api.http_error_retry_after = 0.01
    audio = await client.with_options(max_retries=1).audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input="hi", response_format="pcm"
    )
    assert audio.content == default_synthesizer("hi", "alloy")
    assert fake_api.http_errors == []


# ------------------------------------------------------------------------------- transcriptions


async def test_transcription_json_and_text(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    calls: list[tuple[int, str | None, str | None]] = []

    def transcriber(pcm: bytes, language: str | None, prompt: str | None) -> str:
        calls.append((len(pcm), language, prompt))
        return "Turn on the lights."

    fake_api.transcriber = transcriber
    audio = tone(500, rate=16000)
    result = await client.audio.transcriptions.create(
        file=("speech.wav", wav_bytes(audio, 16000), "audio/wav"),
        model="gpt-4o-transcribe",
        language="en",
        prompt="home automation",
    )
    assert result.text == "Turn on the lights."
    assert result.usage is not None and result.usage.type == "tokens"
    text = await client.audio.transcriptions.create(
        file=("speech.wav", wav_bytes(audio, 16000), "audio/wav"),
        model="gpt-4o-transcribe",
        response_format="text",
    )
    assert text == "Turn on the lights."
    assert calls == [(24000, "en", "home automation"), (24000, None, None)]
    first = fake_api.transcription_requests[0]
    assert first["model"] == "gpt-4o-transcribe"
    assert first["language"] == "en"
    assert (first["rate"], first["channels"], first["sample_width"]) == (16000, 1, 2)
    assert first["audio"] == audio
    assert first["filename"] == "speech.wav"
    assert fake_api.validation_failures == []


async def test_transcription_stream(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.transcriber = lambda pcm, language, prompt: "Turn on the kitchen lights."
    stream = await client.audio.transcriptions.create(
        file=("speech.wav", wav_bytes(tone(300), 24000), "audio/wav"),
        model="gpt-4o-mini-transcribe",
        stream=True,
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == ["transcript.text.delta"] * 5 + ["transcript.text.done"]
    deltas = [e for e in events if isinstance(e, TranscriptionTextDeltaEvent)]
    done = events[-1]
    assert isinstance(done, TranscriptionTextDoneEvent)
    assert "".join(e.delta for e in deltas) == done.text == "Turn on the kitchen lights."
    assert done.usage is not None and done.usage.type == "tokens"
    assert fake_api.transcription_requests[0]["stream"] == "true"
    assert fake_api.validation_failures == []


async def test_real_speech_http_transcription(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.transcriber = speech.whisper_transcriber
    pcm, rate = speech.synthesize_speech(KITCHEN)
    result = await client.audio.transcriptions.create(
        file=("kitchen.wav", wav_bytes(pcm, rate), "audio/wav"), model="gpt-transcribe"
    )
    assert speech.normalize_text(result.text) == speech.normalize_text(KITCHEN)
    assert fake_api.transcription_requests[0]["rate"] == 22050


@pytest.mark.parametrize(
    ("kwargs", "error", "code", "client_bug"),
    [
        ({"model": "retired-model"}, openai.NotFoundError, "model_not_found", False),
        (
            {"model": "whisper-1", "languages": ["en"]},
            openai.BadRequestError,
            "unsupported_parameter",
            True,
        ),
        (
            {"model": "gpt-4o-transcribe", "pcm_ms": 50},
            openai.BadRequestError,
            "audio_too_short",
            False,
        ),
        (
            {"model": "gpt-4o-transcribe", "raw": True},
            openai.BadRequestError,
            "invalid_value",
            True,
        ),
    ],
)
async def test_transcription_errors(
    fake_api: FakeOpenAI,
    client: AsyncOpenAI,
    kwargs: dict[str, Any],
    error: type[Exception],
    code: str,
    client_bug: bool,
) -> None:
    pcm = tone(kwargs.pop("pcm_ms", 300), rate=16000)
    data = pcm if kwargs.pop("raw", False) else wav_bytes(pcm, 16000)
    with pytest.raises(error) as failed:
        await client.audio.transcriptions.create(file=("a.wav", data, "audio/wav"), **kwargs)
    assert getattr(failed.value, "code", None) == code
    # Malformed requests are client bugs; a missing model or a short clip are not.
    assert len(fake_api.validation_failures) == int(client_bug)


def test_split_deltas_concatenate() -> None:
    for text in ["hello world", " leading", "trailing  ", "a  b\tc", "", "one"]:
        assert "".join(split_deltas(text)) == text
    assert split_deltas("Turn on the lights.") == ["Turn ", "on ", "the ", "lights."]
