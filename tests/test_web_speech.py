"""``POST /v1/audio/speech`` of the web face, with the official ``openai`` SDK as the client
(what an app pointed at this server instead of OpenAI uses), against the fake OpenAI
server or the local Piper voice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests import speech
from tests.fake_openai import FakeOpenAI, default_synthesizer
from tests.harness import (
    READ_TIMEOUT,
    logged_problems,
    running_web,
    sdk_client,
    settings_with,
)
from tests.utterances import eventually
from wyoming_openai.tts.base import SpeechOptions
from wyoming_openai.web.face import WebFace

TEXT = "Turn on the kitchen lights."


async def speak(face: WebFace, text: str, api_key: str = "anything", **kwargs: Any) -> bytes:
    """The whole body of a streamed ``pcm`` speech request, made with the SDK."""
    request: dict[str, Any] = {
        "model": "gpt-4o-mini-tts",
        "voice": "alloy",
        "input": text,
        "response_format": "pcm",
        **kwargs,
    }
    async with (
        sdk_client(face, api_key) as client,
        client.audio.speech.with_streaming_response.create(**request) as response,
    ):
        return b"".join([chunk async for chunk in response.iter_bytes()])


def heard(pcm24k: bytes) -> str:
    """What Whisper hears in 24 kHz s16le mono speech, normalized."""
    return speech.normalize_text(speech.transcribe_speech(pcm24k, 24000, "en"))


@pytest.mark.parametrize("text", [TEXT, "Turn on the kitchen lights. Then lock the front door."])
async def test_the_body_is_openais_pcm_of_every_sentence_in_order(
    fake: FakeOpenAI, text: str
) -> None:
    async with running_web(settings_with(fake)) as (_server, face):
        body = await speak(face, text)
    inputs = [request["input"] for request in fake.speech_requests]
    assert " ".join(inputs) == text  # all of the text was spoken, in order
    assert {request["voice"] for request in fake.speech_requests} == {"alloy"}
    assert body == b"".join(default_synthesizer(piece, "alloy") for piece in inputs)


async def test_the_first_audio_arrives_before_the_body_is_complete(fake: FakeOpenAI) -> None:
    fake.speech_pause = asyncio.Event()  # OpenAI holds the body after its first chunk
    async with (
        running_web(settings_with(fake)) as (_server, face),
        sdk_client(face) as client,
        client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input=TEXT, response_format="pcm"
        ) as response,
    ):
        chunks = response.iter_bytes()
        first = await asyncio.wait_for(anext(chunks), READ_TIMEOUT)
        (upstream,) = fake.speech_streams
        assert first and not upstream.completed  # streamed, not gathered first
        assert not response.http_response.is_closed  # the body goes on
        fake.speech_pause.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert first + rest == default_synthesizer(TEXT, "alloy")


async def test_a_client_hanging_up_mid_body_is_no_error(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A player that stops listening half-way: its synthesis ends without a traceback in
    the log, and the server goes on."""
    caplog.set_level(logging.DEBUG)
    fake.speech_pause = asyncio.Event()
    text = "Turn on the kitchen lights and then lock the front door, please."
    async with running_web(settings_with(fake)) as (_server, face):
        async with aiohttp.ClientSession() as session:
            request = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": text}
            response = await session.post(
                face.url + "v1/audio/speech", json={**request, "response_format": "pcm"}
            )
            assert response.status == 200
            assert await asyncio.wait_for(response.content.readany(), READ_TIMEOUT)
            assert response.connection is not None and response.connection.transport
            response.connection.transport.abort()  # gone mid-body
            response.close()
        fake.speech_pause.set()  # the rest of the speech comes, for nobody

        def hung_up() -> bool:
            return any("hung up" in record.getMessage() for record in caplog.records)

        await eventually(hung_up, READ_TIMEOUT)
        assert await speak(face, TEXT) == default_synthesizer(TEXT, "alloy")
    assert not logged_problems(caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"voice": "robot"}, "unknown-voice"),
        ({"input": ""}, "empty-text"),
        ({"input": "   "}, "empty-text"),
        ({"response_format": "ogg"}, "unsupported-format"),
    ],
)
async def test_a_bad_request_is_a_bad_request_error_with_its_code(
    fake: FakeOpenAI, kwargs: dict[str, Any], code: str
) -> None:
    async with running_web(settings_with(fake)) as (_server, face):
        text = kwargs.pop("input", TEXT)
        with pytest.raises(openai.BadRequestError) as info:
            await speak(face, text, **kwargs)
        assert info.value.status_code == 400
        assert info.value.code == code and info.value.message
        assert fake.speech_requests == []  # refused before OpenAI was asked
        assert await speak(face, TEXT)  # the server goes on


async def test_the_token_is_required_as_the_api_key(fake: FakeOpenAI) -> None:
    async with running_web(settings_with(fake, token="s3cret")) as (_server, face):
        with pytest.raises(openai.AuthenticationError) as info:
            await speak(face, TEXT, api_key="wrong")
        assert info.value.code == "unauthorized"
        assert "s3cret" not in str(info.value.body)
        assert fake.speech_requests == []
        assert await speak(face, TEXT, api_key="s3cret") == default_synthesizer(TEXT, "alloy")


@pytest.mark.slow
async def test_piper_at_22050_hz_is_served_at_24_khz(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_web(settings_with(fake, "--engine", "local")) as (server, face):
        engine = server.engines.tts
        assert engine.output_format.rate == 22050
        native: list[bytes] = []
        synthesize = engine.synthesize

        async def recorded(
            text: str, voice: str, options: SpeechOptions | None = None
        ) -> AsyncIterator[bytes]:
            async for chunk in synthesize(text, voice, options):
                native.append(chunk)
                yield chunk

        monkeypatch.setattr(engine, "synthesize", recorded)
        # OpenAI's voice names are not Piper's: an app names the one /healthz lists.
        body = await speak(face, TEXT, voice=engine.default_voice())
    piper_ms = sum(len(chunk) for chunk in native) / (2 * 22050) * 1000
    assert piper_ms > 500
    # 24 kHz samples for Piper's duration (22,050 Hz bytes passed on as they are would be
    # 8 % short); a millisecond for the resampler's edges.
    assert abs(len(body) / 48 - piper_ms) < 1
    assert await asyncio.to_thread(heard, body) == speech.normalize_text(TEXT)
    assert fake.speech_requests == []


@pytest.mark.slow
async def test_openai_down_with_the_local_fallback_piper_speaks(fake: FakeOpenAI) -> None:
    fake.reject_connections = True
    settings = settings_with(
        fake, "--fallback", "local", "--openai-max-retries", "0", "--tts-mode", "speech"
    )
    async with running_web(settings) as (_server, face):
        body = await speak(face, TEXT)
    assert fake.rejected_requests >= 1  # OpenAI was asked first
    assert len(body) > 24000  # at least half a second of speech
    assert await asyncio.to_thread(heard, body) == speech.normalize_text(TEXT)
