"""``POST /v1/audio/speech`` in every ``response_format``, streamed and as server-sent
events, with the official ``openai`` SDK as the client: the returned audio is decoded
(PyAV, stdlib ``wave``) and checked for what a listener would hear."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from typing import Any, Literal

import av
import httpx2
import numpy as np
import openai
import pytest
from pydantic import BaseModel, TypeAdapter

from tests import speech
from tests.fake_openai import FakeOpenAI, default_synthesizer
from tests.harness import READ_TIMEOUT, make_settings, running_web, sdk_client
from tests.utterances import dominant_hz
from wyoming_openai.web.encode import RESPONSE_FORMATS

TEXT = "Turn on the kitchen lights."
SECONDS = len(TEXT) * 0.05  # the fake's default synthesizer: 50 ms of 440 Hz per character
CODED = [f for f in RESPONSE_FORMATS if f != "pcm"]
RATES = {"opus": 48000}  # FFmpeg decodes Opus at 48 kHz whatever it was encoded at
PADDING = 0.1  # s: MP3 and AAC encoders add priming and pad the last frame


class SpeechAudioDelta(BaseModel, extra="forbid"):
    """``SpeechAudioDeltaEvent`` of OpenAI's OpenAPI spec."""

    type: Literal["speech.audio.delta"]
    audio: str


class Usage(BaseModel, extra="forbid"):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechAudioDone(BaseModel, extra="forbid"):
    """``SpeechAudioDoneEvent`` of OpenAI's OpenAPI spec."""

    type: Literal["speech.audio.done"]
    usage: Usage


SpeechStreamEvent: TypeAdapter[SpeechAudioDelta | SpeechAudioDone] = TypeAdapter(
    SpeechAudioDelta | SpeechAudioDone
)


def request(response_format: str, text: str = TEXT, **kwargs: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini-tts",
        "voice": "alloy",
        "input": text,
        "response_format": response_format,
        **kwargs,
    }


def decoded(data: bytes) -> tuple[int, bytes]:
    """``(rate of the file's audio stream, its audio as 24 kHz s16le mono PCM)``."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
        frames = [
            out for frame in [*container.decode(stream), None] for out in resampler.resample(frame)
        ]
        return stream.rate, b"".join(frame.to_ndarray().tobytes() for frame in frames)


def decodable(data: bytes) -> bool:
    """Whether the start of a file holds some audio already (not only its header)."""
    try:
        return bool(decoded(data)[1])
    except av.error.FFmpegError:  # too little to probe the format yet
        return False


def pcm_of(response_format: str, data: bytes) -> bytes:
    """The 24 kHz PCM in a body of ``response_format``, checking the file's rate."""
    if response_format == "pcm":
        return data
    rate, pcm = decoded(data)
    assert rate == RATES.get(response_format, 24000)
    return pcm


def assert_the_fakes_tone(response_format: str, data: bytes, seconds: float = SECONDS) -> None:
    """``data`` holds ``seconds`` of the fake's 440 Hz tone (a few encoder frames more)."""
    pcm = pcm_of(response_format, data)
    duration = len(pcm) / 48000
    assert seconds - 0.01 <= duration <= seconds + PADDING, duration
    assert abs(dominant_hz(pcm) - 440) < 5


async def sse_events(client: openai.AsyncOpenAI, body: dict[str, Any]) -> list[Any]:
    """The events of a ``stream_format: sse`` request, read by the SDK's SSE stream and
    validated against OpenAI's event shapes."""
    stream = await client.post(
        "/audio/speech",
        body={**body, "stream_format": "sse"},
        cast_to=object,
        stream=True,
        stream_cls=openai.AsyncStream[object],
    )
    return [SpeechStreamEvent.validate_python(event) async for event in stream]


def sse_audio(events: list[Any]) -> bytes:
    """The audio of ``speech.audio.delta`` events, which come before one final
    ``speech.audio.done``."""
    assert [type(e) for e in events[-1:]] == [SpeechAudioDone]
    assert all(isinstance(e, SpeechAudioDelta) for e in events[:-1])
    return b"".join(base64.b64decode(e.audio) for e in events[:-1])


@pytest.mark.parametrize("response_format", RESPONSE_FORMATS)
async def test_every_format_holds_the_speech(fake: FakeOpenAI, response_format: str) -> None:
    async with running_web(make_settings(fake.base_url)) as (_server, face), sdk_client(face) as c:
        response = await c.audio.speech.create(**request(response_format))
        data = response.content
    assert_the_fakes_tone(response_format, data)
    assert [r["response_format"] for r in fake.speech_requests] == ["pcm"]  # encoded here
    if response_format == "pcm":
        assert data == default_synthesizer(TEXT, "alloy")


async def test_mp3_is_the_default_format(fake: FakeOpenAI) -> None:
    body = request("mp3")
    del body["response_format"]
    async with running_web(make_settings(fake.base_url)) as (_server, face), sdk_client(face) as c:
        response = await c.audio.speech.create(**body)
    assert response.response.headers["content-type"] == "audio/mpeg"
    with av.open(io.BytesIO(response.content)) as container:
        assert container.streams.audio[0].codec_context.name.startswith("mp3")


async def test_a_streamed_wav_has_open_sizes_and_reads_with_the_stdlib(fake: FakeOpenAI) -> None:
    """A streamed WAV cannot know its length: RIFF and data sizes are 0xFFFFFFFF (as
    OpenAI's), and ``wave`` still reads every sample, exactly."""
    async with running_web(make_settings(fake.base_url)) as (_server, face), sdk_client(face) as c:
        data = (await c.audio.speech.create(**request("wav"))).content
    assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff"
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (24000, 2, 1)
        assert wav.readframes(10**9) == default_synthesizer(TEXT, "alloy")


@pytest.mark.parametrize("response_format", RESPONSE_FORMATS)
async def test_every_format_streams_before_the_upstream_body_is_complete(
    fake: FakeOpenAI, response_format: str
) -> None:
    """OpenAI holds the rest of the body after its first 100 ms: the client can already
    decode audio of it."""
    fake.speech_pause = asyncio.Event()
    async with (
        running_web(make_settings(fake.base_url)) as (_server, face),
        sdk_client(face) as client,
        client.audio.speech.with_streaming_response.create(**request(response_format)) as r,
    ):
        chunks = r.iter_bytes()
        received = b""
        while True:  # until some audio can be decoded (headers alone are not enough)
            received += await asyncio.wait_for(anext(chunks), READ_TIMEOUT)
            if response_format == "pcm" or decodable(received):
                break
        (upstream,) = fake.speech_streams
        assert not upstream.completed  # streamed, not gathered first
        fake.speech_pause.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert_the_fakes_tone(response_format, received + rest)


@pytest.mark.parametrize("response_format", ["pcm", "mp3", "opus", "wav"])
async def test_sse_gives_openais_events_with_the_same_audio(
    fake: FakeOpenAI, response_format: str
) -> None:
    async with running_web(make_settings(fake.base_url)) as (_server, face), sdk_client(face) as c:
        events = await sse_events(c, request(response_format))
    assert len(events) >= 3  # audio in several deltas as it is made, then done
    assert_the_fakes_tone(response_format, sse_audio(events))


async def test_speed_and_instructions_reach_openai(fake: FakeOpenAI) -> None:
    async with running_web(make_settings(fake.base_url)) as (_server, face), sdk_client(face) as c:
        await c.audio.speech.create(
            **request("pcm"), speed=1.5, instructions="Speak like a butler."
        )
        await c.audio.speech.create(**request("pcm"))
    first, second = fake.speech_requests
    assert first["speed"] == 1.5
    assert first["instructions"] == "Speak like a butler."
    assert "speed" not in second and "instructions" not in second  # the next request's own


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"speed": 4.5}, "bad-request"),
        ({"speed": 0.1}, "bad-request"),
        ({"speed": "fast"}, "bad-request"),
        ({"response_format": "ogg"}, "unsupported-format"),
        ({"stream_format": "chunks"}, "unsupported-format"),
        ({"instructions": "x" * 4097}, "text-too-long"),
        ({"input": "word " * 30}, "text-too-long"),  # over --limits-max-text-chars 100
        ({"voice": {"id": "voice_123"}}, "bad-request"),
        ({"model": 7}, "bad-request"),
    ],
)
async def test_bad_fields_are_400_in_openais_shape(
    fake: FakeOpenAI, kwargs: dict[str, Any], code: str
) -> None:
    settings = make_settings(fake.base_url, "--limits-max-text-chars", "100")
    async with running_web(settings) as (_server, face), sdk_client(face) as c:
        with pytest.raises(openai.BadRequestError) as info:
            await c.audio.speech.create(**{**request("mp3"), **kwargs})
        assert info.value.code == code and info.value.message
        assert info.value.body is not None and info.value.type == "invalid_request_error"
        assert fake.speech_requests == []  # refused before OpenAI was asked
        assert (await c.audio.speech.create(**request("mp3"))).content  # the server goes on


@pytest.mark.parametrize(
    ("upstream", "error", "status"),
    [
        ((503, None), openai.InternalServerError, 503),
        ((429, "rate_limit_exceeded"), openai.RateLimitError, 429),
        ((429, "insufficient_quota"), openai.RateLimitError, 429),
    ],
)
async def test_openai_out_without_fallback_is_429_or_503(
    fake: FakeOpenAI,
    upstream: tuple[int, str | None],
    error: type[openai.APIStatusError],
    status: int,
) -> None:
    fake.http_errors = [upstream] * 10
    settings = make_settings(fake.base_url, "--openai-max-retries", "0", "--tts-mode", "speech")
    async with running_web(settings) as (_server, face), sdk_client(face) as c:
        with pytest.raises(error) as info:
            await c.audio.speech.create(**request("mp3"))
    assert info.value.status_code == status
    assert len(fake.http_errors) == 9  # OpenAI was asked, once


@pytest.mark.parametrize("stream_format", ["audio", "sse"])
async def test_a_failure_after_the_first_byte_cuts_the_response(
    fake: FakeOpenAI, stream_format: str
) -> None:
    """Never a short file taken for a whole one: the client's read fails."""
    fake.speech_fail_after_bytes = 20_000
    body = request("mp3", "A reply long enough to be cut off somewhere in the middle.")
    async with running_web(make_settings(fake.base_url)) as (_server, face), sdk_client(face) as c:
        with pytest.raises((httpx2.HTTPError, openai.APIError)):
            if stream_format == "sse":
                await sse_events(c, body)
            else:
                async with c.audio.speech.with_streaming_response.create(**body) as response:
                    assert response.status_code == 200  # it had begun
                    await response.read()
        fake.speech_fail_after_bytes = None
        assert (await c.audio.speech.create(**request("mp3"))).content  # the server goes on


# ------------------------------------------------------------------ real speech (slow)


def heard(response_format: str, data: bytes) -> str:
    """What Whisper hears in a body of ``response_format``, normalized."""
    pcm = pcm_of(response_format, data)
    return speech.normalize_text(speech.transcribe_speech(pcm, 24000, "en"))


@pytest.mark.slow
@pytest.mark.parametrize("response_format", CODED)
async def test_whisper_hears_the_text_in_every_format(
    fake: FakeOpenAI, response_format: str
) -> None:
    fake.synthesizer = speech.piper_synthesizer
    async with running_web(make_settings(fake.base_url)) as (_server, face), sdk_client(face) as c:
        data = (await c.audio.speech.create(**request(response_format))).content
    assert await asyncio.to_thread(heard, response_format, data) == speech.normalize_text(TEXT)


@pytest.mark.slow
@pytest.mark.parametrize("stream_format", ["audio", "sse"])
async def test_without_a_key_piper_answers_in_mp3(fake: FakeOpenAI, stream_format: str) -> None:
    """An app written for OpenAI names an OpenAI voice: Piper's voice speaks it."""
    settings = make_settings(fake.base_url, "--engine", "local")
    async with running_web(settings) as (_server, face), sdk_client(face) as c:
        body = request("mp3", voice="alloy")
        if stream_format == "sse":
            data = sse_audio(await sse_events(c, body))
        else:
            async with c.audio.speech.with_streaming_response.create(**body) as response:
                data = await response.read()
    assert await asyncio.to_thread(heard, "mp3", data) == speech.normalize_text(TEXT)
    assert fake.speech_requests == []


@pytest.mark.slow
async def test_piper_honours_speed(fake: FakeOpenAI) -> None:
    settings = make_settings(fake.base_url, "--engine", "local")
    async with running_web(settings) as (server, face), sdk_client(face) as c:
        body = request("wav", voice=server.engines.tts.default_voice())
        normal = (await c.audio.speech.create(**body)).content
        fast = (await c.audio.speech.create(**body, speed=2.0)).content
    ratio = len(decoded(fast)[1]) / len(decoded(normal)[1])
    assert 0.4 < ratio < 0.65  # about half as long
    assert await asyncio.to_thread(heard, "wav", fast) == speech.normalize_text(TEXT)


@pytest.mark.slow
async def test_openai_down_with_the_local_fallback_piper_speaks_flac(fake: FakeOpenAI) -> None:
    fake.reject_connections = True
    settings = make_settings(
        fake.base_url, "--fallback", "local", "--openai-max-retries", "0", "--tts-mode", "speech"
    )
    async with running_web(settings) as (_server, face), sdk_client(face) as c:
        data = (await c.audio.speech.create(**request("flac"))).content
    assert fake.rejected_requests >= 1  # OpenAI was asked first
    assert await asyncio.to_thread(heard, "flac", data) == speech.normalize_text(TEXT)


def test_decoding_helper_sees_silence_as_no_tone() -> None:
    """The content check can fail: a file of silence is not the fake's tone."""
    silence = np.zeros(24000, dtype="<i2").tobytes()
    with pytest.raises(AssertionError):
        assert_the_fakes_tone("pcm", silence, seconds=1.0)


@pytest.mark.slow
async def test_openai_failing_mid_body_with_the_fallback_still_cuts_the_file(
    fake: FakeOpenAI,
) -> None:
    """Over Wyoming the fallback ends a sentence early and the reply goes on; a file cut
    short that way would look whole, so the HTTP client's read fails instead."""
    fake.speech_fail_after_bytes = 20_000
    settings = make_settings(fake.base_url, "--fallback", "local", "--tts-mode", "speech")
    body = request("wav", "A reply long enough to be cut off somewhere in the middle.")
    async with running_web(settings) as (_server, face), sdk_client(face) as c:
        with pytest.raises((httpx2.HTTPError, openai.APIError)):
            async with c.audio.speech.with_streaming_response.create(**body) as response:
                await response.read()
