"""Bad input on the Wyoming side: a clear error where possible, only that connection
dropped, everything it held freed, everyone else served."""

from __future__ import annotations

import asyncio
import json

import pytest
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.fake_openai import FakeOpenAI
from tests.harness import describe, ha_synthesize, ha_transcribe, make_settings, running_server
from tests.utterances import tone


async def raw_exchange(port: int, data: bytes, read_timeout: float = 5.0) -> list[dict]:
    """Send raw bytes, then read event headers until the server closes (or timeout)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    headers: list[dict] = []
    try:
        async with asyncio.timeout(read_timeout):
            while line := await reader.readline():
                header = json.loads(line)
                if header.get("data_length"):
                    header["data"] = json.loads(await reader.readexactly(header["data_length"]))
                if header.get("payload_length"):
                    await reader.readexactly(header["payload_length"])
                headers.append(header)
    except TimeoutError:
        headers.append({"type": "<still open>"})
    finally:
        writer.close()
    return headers


@pytest.mark.parametrize(
    "frame",
    [
        b"this is not json\n",
        b"[1, 2, 3]\n",
        b'{"no_type": true}\n',
        b'{"type": "describe", "data_length": -5}\n',
        b'{"type": "describe", "data_length": "ten"}\n',
        b'{"type": "audio-chunk", "payload_length": 10000000000}\n',
        b'{"type": "describe", "data_length": 5000000}\n',
        b'{"type": "describe", "data_length": 3}\n[1]',
        b'{"type": "' + b"x" * 100_000 + b'"}\n',
    ],
    ids=[
        "not-json",
        "not-object",
        "no-type",
        "negative-length",
        "string-length",
        "absurd-payload",
        "oversized-data",
        "data-not-object",
        "huge-header",
    ],
)
async def test_malformed_frames_get_bad_frame_then_close(port: int, frame: bytes) -> None:
    headers = await raw_exchange(port, frame)
    assert [h["type"] for h in headers] == ["error"]
    assert headers[0]["data"]["code"] == "bad-frame"
    await describe(port)


async def test_truncated_payload_and_disconnects_are_quietly_dropped(port: int) -> None:
    for data in (
        b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1}, '
        b'"payload_length": 640}\n' + b"\x00" * 100,
        b'{"type": "transcribe", "da',
        b"",
    ):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    await describe(port)


async def test_oversized_audio_chunk_is_refused(fake: FakeOpenAI) -> None:
    settings = make_settings(fake.base_url, "--limits-max-payload-bytes", "8192")
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000), chunk_ms=500)
        assert result.error is not None and result.error.code == "bad-frame"
        ok = await ha_transcribe(server.port, tone(300, 0.5, 16000))
        assert ok.transcript == "hello world"


async def test_too_long_utterance_is_refused_and_upstream_released(fake: FakeOpenAI) -> None:
    settings = make_settings(fake.base_url, "--limits-max-utterance-seconds", "1")
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(300, 2.0, 16000))
        assert result.error is not None and result.error.code == "utterance-too-long"
        assert result.types.count("error") == 1
        for session in fake.realtime_sessions:
            await asyncio.wait_for(session.closed.wait(), 5)
        assert all(session.commits == [] for session in fake.realtime_sessions)


async def test_too_long_text_is_refused(fake: FakeOpenAI) -> None:
    settings = make_settings(fake.base_url, "--limits-max-text-chars", "100")
    async with running_server(settings) as server:
        assert server.port is not None
        plain = await ha_synthesize(server.port, "word " * 30)
        assert plain.error is not None and plain.error.code == "text-too-long"
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(SynthesizeStart().event())
            for _ in range(30):
                await client.write_event(SynthesizeChunk(text="word ").event())
            await client.write_event(SynthesizeStop().event())
            event = await asyncio.wait_for(client.read_event(), 5)
            assert event is not None and Error.is_type(event.type)
            assert Error.from_event(event).code == "text-too-long"
    assert fake.speech_requests == []


async def test_missing_audio_fields_are_a_bad_format_error(port: int) -> None:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        event = AudioStart(rate=16000, width=2, channels=1).event()
        event.data = {"rate": "fast"}
        await client.write_event(event)
        reply = await asyncio.wait_for(client.read_event(), 5)
        assert reply is not None and Error.from_event(reply).code == "bad-audio-format"
        # the connection is still usable
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        await client.write_event(
            AudioChunk(rate=16000, width=2, channels=1, audio=tone(300, 0.3, 16000)).event()
        )
    await describe(port)


async def test_synthesize_without_text_field_is_a_bad_request(port: int) -> None:
    headers = await raw_exchange(port, b'{"type": "synthesize", "data": {}}\n', read_timeout=1)
    assert headers[0]["type"] == "error"
    assert headers[0]["data"]["code"] == "bad-request"
    assert headers[-1]["type"] == "<still open>"  # only the event was refused
