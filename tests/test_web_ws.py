"""``WS /v1/transcriptions`` with a plain WebSocket client (aiohttp), against the fake OpenAI
server: the seed protocol, continuous sessions, every format, errors, tokens and origins."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import READ_TIMEOUT, make_settings, running_web
from tests.utterances import RATE, command, piper_16k, room_noise, use_whisper
from wyoming_openai.audio import AudioFormat
from wyoming_openai.config import Settings
from wyoming_openai.resample import AudioConverter
from wyoming_openai.web.face import WebFace

CHUNK_MS = 20


def settings_with(fake: FakeOpenAI, *argv: str, token: str | None = None) -> Settings:
    settings = make_settings(fake.base_url, *argv)
    if token is not None:
        web = settings.web.model_copy(update={"token": SecretStr(token)})
        settings = settings.model_copy(update={"web": web})
    return settings


@contextlib.asynccontextmanager
async def web_face(settings: Settings) -> AsyncIterator[WebFace]:
    async with running_web(settings) as (_server, face):
        yield face


def ws_url(face: WebFace) -> str:
    return face.url.replace("http://", "ws://") + "v1/transcriptions"


@contextlib.asynccontextmanager
async def connect(face: WebFace, **kwargs: Any) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url(face), **kwargs) as ws,
    ):
        yield ws


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
    """The next JSON message, or None once the server closed."""
    message = await asyncio.wait_for(ws.receive(), READ_TIMEOUT)
    if message.type == aiohttp.WSMsgType.TEXT:
        return json.loads(message.data)
    return None


async def send_audio(ws: aiohttp.ClientWebSocketResponse, pcm: bytes, fmt: AudioFormat) -> None:
    step = fmt.bytes_for_ms(CHUNK_MS)
    for start in range(0, len(pcm), step):
        await ws.send_bytes(pcm[start : start + step])


async def messages_until_stopped(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    found = []
    while (message := await receive(ws)) is not None:
        found.append(message)
        if message.get("stopped") or "error" in message:
            break
    return found


def finals(messages: list[dict[str, Any]]) -> list[str]:
    return [m["final"] for m in messages if "final" in m]


async def test_seed_client_start_audio_stop_gets_partials_and_the_final(fake: FakeOpenAI) -> None:
    """A client written as the seed's README describes: start, binary PCM16, stop."""
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        await ws.send_json({"action": "start", "language": "en"})
        first = await receive(ws)
        assert first is not None and isinstance(first.get("session_id"), str)
        await send_audio(ws, command("Turn on the kitchen lights."), AudioFormat(RATE, 2, 1))
        await ws.send_json({"action": "stop"})
        messages = await messages_until_stopped(ws)
        assert messages[-1] == {"stopped": True}
        assert finals(messages) == ["hello world"]
        assert all(set(m) <= {"partial", "final", "latency_ms", "stopped"} for m in messages)
        closing = await ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1000


@pytest.mark.slow
async def test_two_sentences_with_a_pause_give_two_finals_and_nothing_is_lost(
    fake: FakeOpenAI,
) -> None:
    use_whisper(fake)
    first, second = "Turn on the kitchen lights.", "Lock the front door."
    pcm = piper_16k(first) + room_noise(1.5) + piper_16k(second) + room_noise(1.5)
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        await ws.send_json({"action": "start", "language": "en"})
        await receive(ws)
        await send_audio(ws, pcm, AudioFormat(RATE, 2, 1))
        await ws.send_json({"action": "stop"})
        messages = await messages_until_stopped(ws)
    got = [speech.normalize_text(text) for text in finals(messages)]
    assert got == [speech.normalize_text(first), speech.normalize_text(second)]


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
async def test_pcm16_at_any_rate_is_resampled_and_transcribed(fake: FakeOpenAI, rate: int) -> None:
    converter = AudioConverter(AudioFormat(RATE, 2, 1), AudioFormat(rate, 2, 1))
    pcm = converter.convert(command("Turn on the kitchen lights.")) + converter.flush()
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        await ws.send_json({"action": "start", "format": "pcm16", "rate": rate})
        await receive(ws)
        await send_audio(ws, pcm, AudioFormat(rate, 2, 1))
        await ws.send_json({"action": "stop"})
        assert finals(await messages_until_stopped(ws)) == ["hello world"]
    (record,) = fake.realtime_sessions
    sent_ms = len(record.audio) / 48
    # All of it went upstream but what the resampler still held when the detector ended
    # the utterance in the trailing room noise (its filter delay: tens of ms).
    assert 0 <= len(pcm) / (2 * rate) * 1000 - sent_ms < 100


@pytest.mark.parametrize(
    ("messages", "code", "close"),
    [
        (["not json"], "bad-request", 1003),
        ([{"action": "dance"}], "bad-request", 1003),
        ([b"\x00\x01"], "audio-without-start", 1003),
        ([{"action": "start"}, {"action": "start"}], "bad-request", 1003),
        ([{"action": "start", "format": "mp3"}], "unsupported-format", 1003),
        ([{"action": "start", "rate": 0}], "bad-audio-format", 1003),
        ([{"action": "start", "rate": "fast"}], "bad-request", 1003),
    ],
)
async def test_bad_input_gets_an_error_with_its_code_and_close(
    fake: FakeOpenAI, messages: list[Any], code: str, close: int
) -> None:
    async with web_face(settings_with(fake)) as face:
        async with connect(face) as ws:
            for message in messages:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                elif isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_json(message)
            received = []
            while (answer := await receive(ws)) is not None:
                received.append(answer)
            error = received[-1]
            assert error["code"] == code and error["error"], received
            assert ws.close_code == close
        async with connect(face) as other:  # the server goes on
            await other.send_json({"action": "start"})
            assert "session_id" in (await receive(other) or {})


async def test_token_is_required_in_start_or_the_protocol_header(fake: FakeOpenAI) -> None:
    async with web_face(settings_with(fake, token="s3cret")) as face:
        async with connect(face) as ws:
            await ws.send_json({"action": "start"})
            error = await receive(ws)
            assert error is not None and error["code"] == "unauthorized"
            assert "s3cret" not in json.dumps(error)
            await receive(ws)
            assert ws.close_code == 1008
        async with connect(face) as ws:
            await ws.send_json({"action": "start", "token": "s3cret"})
            assert "session_id" in (await receive(ws) or {})
        async with connect(face, protocols=("bearer.s3cret",)) as ws:
            assert ws.protocol == "bearer.s3cret"
            await ws.send_json({"action": "start"})
            assert "session_id" in (await receive(ws) or {})
        async with connect(face, protocols=("bearer.wrong",)) as ws:
            error = await receive(ws)
            assert error is not None and error["code"] == "unauthorized"


async def test_a_page_of_another_origin_is_refused(fake: FakeOpenAI) -> None:
    async with web_face(settings_with(fake)) as face:
        async with connect(face, origin="http://evil.example") as ws:
            error = await receive(ws)
            assert error is not None and error["code"] == "forbidden-origin"
            await receive(ws)
            assert ws.close_code == 1008
        own = face.url.rstrip("/")
        async with connect(face, origin=own) as ws:
            await ws.send_json({"action": "start"})
            assert "session_id" in (await receive(ws) or {})


async def test_healthz_names_the_engines(fake: FakeOpenAI) -> None:
    async with (
        web_face(settings_with(fake)) as face,
        aiohttp.ClientSession() as session,
        session.get(face.url + "healthz") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["stt"]["engine"] == "openai" and body["stt"]["model"]
    assert body["tts"]["voice"] == "alloy" and "alloy" in body["tts"]["voices"]
    assert body["fallback"] is False and body["token_required"] is False
