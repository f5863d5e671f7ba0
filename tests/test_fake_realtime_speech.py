"""The fake's realtime conversation (speech) session is faithful: driven by the real SDK.

Event shapes are those of ``openai.types.realtime`` (the fake validates what it sends and
receives with them; ``validation_failures`` must stay empty).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import websockets
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from tests.fake_openai import DEFAULT_API_KEY, FakeOpenAI, default_synthesizer
from tests.utterances import eventually

TIMEOUT = 10.0
MODEL = "gpt-realtime-2.1-mini"


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def client(fake_api: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(api_key=DEFAULT_API_KEY, base_url=fake_api.base_url, max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


async def recv_until(conn: AsyncRealtimeConnection, event_type: str) -> list[Any]:
    """All events up to and including the first of ``event_type``."""
    events = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            event = await conn.recv()
            events.append(event)
            if event.type == event_type:
                return events


async def configure(conn: AsyncRealtimeConnection, voice: str = "coral") -> Any:
    (created,) = await recv_until(conn, "session.created")
    assert created.session.type == "realtime"
    await conn.session.update(
        session={
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": "Read the text verbatim.",
            "audio": {
                "input": {"turn_detection": None},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": voice},
            },
        }
    )
    return (await recv_until(conn, "session.updated"))[-1]


async def say(conn: AsyncRealtimeConnection, text: str) -> list[Any]:
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await conn.response.create()
    return await recv_until(conn, "response.done")


async def test_a_response_speaks_the_text_with_the_voice(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    text = "The garage door is open."
    async with client.realtime.connect(model=MODEL) as conn:
        updated = await configure(conn, voice="coral")
        assert updated.session.audio.output.voice == "coral"
        events = await say(conn, text)
    types = [event.type for event in events]
    assert types[:2] == ["conversation.item.added", "conversation.item.done"]
    assert "response.created" in types
    assert types.index("response.output_audio.done") < types.index("response.done")
    audio = b"".join(
        base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"
    )
    assert audio == default_synthesizer(text, "coral")
    assert all(
        len(base64.b64decode(e.delta)) % 2 == 0
        for e in events
        if e.type == "response.output_audio.delta"
    )
    deltas = [e.delta for e in events if e.type == "response.output_audio_transcript.delta"]
    assert "".join(deltas) == text
    done = events[-1].response
    assert done.status == "completed"
    assert done.output[0].role == "assistant"
    (record,) = fake_api.realtime_sessions
    assert record.query == {"model": MODEL}
    assert record.spoken == [text]
    assert fake_api.validation_failures == []


async def test_voice_is_fixed_once_the_session_has_spoken(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    async with client.realtime.connect(model=MODEL) as conn:
        await configure(conn, voice="ash")
        await say(conn, "Hi.")
        await conn.session.update(
            session={"type": "realtime", "audio": {"output": {"voice": "cedar"}}}
        )
        (error,) = await recv_until(conn, "error")
    assert error.error.code == "cannot_update_voice"


async def test_speech_only_voices_are_refused(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    async with client.realtime.connect(model=MODEL) as conn:
        await recv_until(conn, "session.created")
        await conn.session.update(
            session={"type": "realtime", "audio": {"output": {"voice": "fable"}}}
        )
        (error,) = await recv_until(conn, "error")
    assert error.error.param == "session.audio.output.voice"


async def test_cancel_stops_the_response(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.realtime_hold = asyncio.Event()  # the response waits after its first audio
    async with client.realtime.connect(model=MODEL) as conn:
        await configure(conn)
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "A rather long sentence to speak."}],
            }
        )
        await conn.response.create()
        events = await recv_until(conn, "response.output_audio.delta")
        response_id = events[-1].response_id
        await conn.response.cancel(response_id=response_id)
        await eventually(lambda: fake_api.realtime_sessions[0].cancelled_responses, TIMEOUT)
        fake_api.realtime_hold.set()  # the response goes on, and stops
        events = await recv_until(conn, "response.done")
        await conn.response.cancel()
        (late,) = await recv_until(conn, "error")
    done = events[-1].response
    assert done.status == "cancelled"
    assert done.status_details.reason == "client_cancelled"
    assert "response.output_audio.done" not in [e.type for e in events]
    assert fake_api.realtime_sessions[0].cancelled_responses == [response_id]
    assert late.error.code == "response_cancel_not_active"


async def test_one_response_at_a_time_and_item_deletion(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake_api.realtime_hold = asyncio.Event()  # the first response is active until set
    async with client.realtime.connect(model=MODEL) as conn:
        await configure(conn)
        await conn.conversation.item.create(
            item={
                "id": "item_mine",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "One sentence."}],
            }
        )
        await conn.response.create()
        await conn.response.create()
        (busy,) = [e for e in await recv_until(conn, "error") if e.type == "error"]
        fake_api.realtime_hold.set()
        await recv_until(conn, "response.done")
        await conn.conversation.item.delete(item_id="item_mine")
        deleted = (await recv_until(conn, "conversation.item.deleted"))[-1]
        await conn.conversation.item.delete(item_id="item_mine")
        missing = (await recv_until(conn, "error"))[-1]
    assert busy.error.code == "conversation_already_has_active_response"
    assert deleted.item_id == "item_mine"
    assert missing.error.code == "item_not_found"
    assert fake_api.realtime_sessions[0].deleted_items == ["item_mine"]


async def test_injected_error_and_different_words(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake_api.realtime_errors = ["rate_limit_exceeded"]
    fake_api.realtime_says = lambda text: f"Sure! {text}"
    async with client.realtime.connect(model=MODEL) as conn:
        await configure(conn)
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello."}],
            }
        )
        await conn.response.create()
        error = (await recv_until(conn, "error"))[-1]
        await conn.response.create()
        events = await recv_until(conn, "response.done")
    assert error.error.code == "rate_limit_exceeded"
    transcript = [e for e in events if e.type == "response.output_audio_transcript.done"]
    assert transcript[0].transcript == "Sure! Hello."


async def test_retired_models(fake_api: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake_api.retired_models = {"gpt-4o-mini-tts", "gpt-realtime-retired"}
    with pytest.raises(openai.NotFoundError) as info:
        await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input="hi")
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert "deprecated" in info.value.message
    async with client.realtime.connect(model="gpt-realtime-retired") as conn:
        (error,) = await recv_until(conn, "error")
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await conn.recv()
    assert error.error.code == "model_not_found"
    assert fake_api.validation_failures == []


async def test_retired_transcription_model_in_a_transcription_session(
    fake_api: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake_api.retired_models = {"whisper-1"}
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await recv_until(conn, "session.created")
        await conn.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"transcription": {"model": "whisper-1"}}},
            }
        )
        (error,) = await recv_until(conn, "error")
    assert error.error.code == "model_not_found"
    assert "deprecated" in error.error.message
