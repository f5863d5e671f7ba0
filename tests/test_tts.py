"""Text to speech through the real server: plain and Home Assistant's streaming order."""

from __future__ import annotations

import asyncio
import time

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize

from tests import speech
from tests.fake_openai import FakeOpenAI, default_synthesizer
from tests.harness import (
    READ_TIMEOUT,
    TtsResult,
    _read_tts,
    describe,
    ha_synthesize,
    ha_synthesize_stream,
    make_settings,
    running_server,
)
from tests.utterances import eventually
from wyoming_openai.audio import PCM_24K_MONO, AudioFormat
from wyoming_openai.resample import AudioConverter


def use_piper(fake: FakeOpenAI) -> None:
    """Make the fake speak for real: Piper speech resampled to 24 kHz."""

    def synthesize(text: str, voice: str) -> bytes:
        pcm, rate = speech.synthesize_speech(text)
        converter = AudioConverter(AudioFormat(rate, 2, 1), PCM_24K_MONO)
        return converter.convert(pcm) + converter.flush()

    fake.synthesizer = synthesize


def assert_one_wav_format(result_formats: set[tuple[int, int, int]]) -> None:
    assert result_formats == {(24000, 2, 1)}


async def test_plain_synthesize_streams_24k_pcm_whole_samples(fake: FakeOpenAI, port: int) -> None:
    text = "Hello there."
    result = await ha_synthesize(port, text)
    assert result.types[0] == "audio-start"
    assert result.types[-1] == "audio-stop"
    assert set(result.types[1:-1]) == {"audio-chunk"}
    assert_one_wav_format(result.formats)
    # The fake's body chunks are 4801 bytes (they split samples); ours never do.
    assert all(len(e.payload or b"") % 2 == 0 for e in result.events if e.type == "audio-chunk")
    assert result.audio == default_synthesizer(text, "alloy")
    (request,) = fake.speech_requests
    assert request["response_format"] == "pcm"
    assert request["model"] == "gpt-4o-mini-tts"
    assert request["voice"] == "alloy"
    assert request["input"] == text


async def test_voice_from_the_request_and_settings(fake: FakeOpenAI) -> None:
    settings = make_settings(
        fake.base_url, "--tts-voice", "coral", "--tts-speed", "1.25", "--tts-instructions", "Calm."
    )
    async with running_server(settings) as server:
        assert server.port is not None
        await ha_synthesize(server.port, "One.")
        await ha_synthesize(server.port, "Two.", voice="onyx")
    assert [r["voice"] for r in fake.speech_requests] == ["coral", "onyx"]
    assert all(r["speed"] == 1.25 and r["instructions"] == "Calm." for r in fake.speech_requests)


async def test_unknown_voice_is_an_error(fake: FakeOpenAI, port: int) -> None:
    result = await ha_synthesize(port, "Hello.", voice="nobody")
    assert result.error is not None
    assert result.error.code == "unknown-voice"
    assert "alloy" in result.error.text
    assert fake.speech_requests == []


async def test_empty_text_is_an_error(port: int) -> None:
    result = await ha_synthesize(port, "   ")
    assert result.error is not None
    assert result.error.code == "empty-text"
    await describe(port)


async def test_home_assistant_streaming_order(fake: FakeOpenAI, port: int) -> None:
    """Deltas split words and sentences anywhere; the full-text synthesize is ignored."""
    deltas = ["Hello the", "re. How are", " you today? I am", " fine", "."]
    result = await ha_synthesize_stream(port, deltas, voice="nova")
    assert result.error is None
    assert result.types[0] == "audio-start"
    assert result.types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert result.types.count("audio-start") == 1
    assert_one_wav_format(result.formats)
    sentences = ["Hello there.", "How are you today?", "I am fine."]
    # requests run concurrently (lookahead), so they may arrive in any order...
    assert sorted(r["input"] for r in fake.speech_requests) == sorted(sentences)
    assert all(r["voice"] == "nova" for r in fake.speech_requests)
    # ...but the audio is played in the order of the text
    assert result.audio == b"".join(default_synthesizer(s, "nova") for s in sentences)


async def test_next_sentence_is_requested_while_the_previous_one_plays(
    fake: FakeOpenAI, port: int
) -> None:
    """Sentence 2 is requested before sentence 1's audio has all reached the client."""
    fake.speech_pause = asyncio.Event()  # sentence 1 stops after its first body chunk...
    text = ["The first sentence is fairly long to speak. ", "The second one follows."]
    synthesis = asyncio.create_task(ha_synthesize_stream(port, text))
    await eventually(lambda: len(fake.speech_streams) == 2 or synthesis.done(), READ_TIMEOUT)
    fake.speech_pause.set()  # ...until sentence 2 was requested
    result = await synthesis
    first, second = fake.speech_streams
    assert first.finished_at is not None
    arrivals = [
        t
        for t, e in zip(result.arrival_times, result.events, strict=True)
        if e.type == "audio-chunk"
    ]
    first_audio_chunks = -(-first.total_bytes // fake.tts_chunk_bytes)
    last_chunk_of_first = arrivals[first_audio_chunks - 1]
    assert second.started_at < last_chunk_of_first


async def test_text_over_the_api_limit_is_split_at_sentences(fake: FakeOpenAI, port: int) -> None:
    sentence = "This sentence is part of a very long announcement. "
    text = sentence * 120  # about 6,100 characters
    result = await ha_synthesize(port, text)
    assert result.error is None
    inputs = [r["input"] for r in fake.speech_requests]
    assert len(inputs) == 2
    assert all(len(piece) <= 4096 and piece.endswith("announcement.") for piece in inputs)
    assert " ".join(inputs) == text.strip()


async def test_unknown_model_is_reported(fake: FakeOpenAI) -> None:
    async with running_server(make_settings(fake.base_url, "--tts-model", "retired-model")) as srv:
        assert srv.port is not None
        result = await ha_synthesize(srv.port, "Hello.")
    assert result.error is not None
    assert result.error.code == "model-not-found"


@pytest.mark.parametrize("stream", [False, True])
async def test_real_speech_comes_back_as_its_text(
    fake: FakeOpenAI, port: int, stream: bool
) -> None:
    use_piper(fake)
    text = "The garage door is open. Shall I close it?"
    if stream:
        result = await ha_synthesize_stream(
            port, ["The garage door", " is open. Shall I", " close it?"]
        )
    else:
        result = await ha_synthesize(port, text)
    assert result.error is None
    assert_one_wav_format(result.formats)
    heard = await asyncio.to_thread(speech.transcribe_speech, result.audio, 24000, "en")
    print(f"\nreal speech TTS ({'stream' if stream else 'plain'}): {text!r} -> {heard!r}")
    assert speech.normalize_text(heard) == speech.normalize_text(text)


async def test_concurrent_syntheses_each_get_their_own_audio(fake: FakeOpenAI, port: int) -> None:
    texts = [f"Message number {word}." for word in ("one", "two", "three", "four", "five")]
    results = await asyncio.gather(*(ha_synthesize(port, text) for text in texts))
    for text, result in zip(texts, results, strict=True):
        assert result.audio == default_synthesizer(text, "alloy")


async def test_first_audio_leaves_before_the_body_is_complete(fake: FakeOpenAI, port: int) -> None:
    """Streamed: the first audio-chunk arrives while the fake is still sending the body
    (it holds the rest back after the first body chunk until the test has seen it)."""
    fake.speech_pause = asyncio.Event()
    result = TtsResult()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        reader = asyncio.create_task(_read_tts(client, result, "audio-stop"))
        started = time.monotonic()
        text = "A sentence long enough to need several body chunks."
        await client.write_event(Synthesize(text=text).event())
        await eventually(lambda: result.first_audio_at is not None or reader.done(), READ_TIMEOUT)
        (stream,) = fake.speech_streams
        assert result.first_audio_at is not None and not stream.completed
        fake.speech_pause.set()
        await asyncio.wait_for(reader, READ_TIMEOUT)
    assert result.first_audio_at is not None and stream.finished_at is not None
    assert started < result.first_audio_at < stream.finished_at
    assert stream.completed
