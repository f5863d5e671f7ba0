"""OpenAI covered by the local engines (``fallback: local``) during outages.

The fake OpenAI server refuses connections (503 on every request and WebSocket handshake),
answers 500, or hangs; the client, driven as Home Assistant drives it, still gets the right
transcript (the utterance is transcribed locally) and a reply it can play in one format
(Piper, resampled to OpenAI's 24 kHz). Failures that are not outages still reach it.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import (
    API_KEY,
    describe,
    fallback_settings,
    ha_synthesize,
    ha_synthesize_stream,
    ha_transcribe,
    make_settings,
    running_server,
)
from wyoming_openai.audio import PCM_24K_MONO, AudioFormat
from wyoming_openai.resample import AudioConverter

pytestmark = pytest.mark.slow  # the local engines answer (real models)

TEXT = "Turn on the kitchen lights."
REPLY = ["The garage door ", "is open. Shall I ", "close it?"]

SHORT_DEADLINES = ("--openai-timeout", "0.5", "--openai-connect-timeout", "0.5")
"""Deadlines for the hanging fake (seconds), so the tests stay fast."""


def piper_16k(text: str) -> bytes:
    pcm, rate = speech.synthesize_speech(text)
    converter = AudioConverter(AudioFormat(rate, 2, 1), AudioFormat(16000, 2, 1))
    return converter.convert(pcm) + converter.flush()


def piper_24k(text: str) -> bytes:
    pcm, rate = speech.synthesize_speech(text)
    converter = AudioConverter(AudioFormat(rate, 2, 1), PCM_24K_MONO)
    return converter.convert(pcm) + converter.flush()


def fallback_lines(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(what)]


def assert_heard(audio24k: bytes, text: str) -> None:
    heard = speech.transcribe_speech(audio24k, PCM_24K_MONO.rate)
    assert speech.normalize_text(heard) == speech.normalize_text(text)


# ------------------------------------------------------------------------ speech to text


@pytest.mark.parametrize(
    ("fault", "mode", "code"),
    [
        ("refuse", "realtime", "upstream-unavailable"),
        ("hang", "realtime", "timeout"),
        ("500", "http", "upstream-unavailable"),
        ("refuse", "http", "upstream-unavailable"),
        ("hang", "http", "timeout"),
    ],
)
async def test_transcript_is_right_while_openai_is_out(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, fault: str, mode: str, code: str
) -> None:
    if fault == "refuse":
        fake.reject_connections = True
    elif fault == "hang":
        fake.hang = True
    else:
        fake.http_errors = [(500, None)]
    settings = fallback_settings(fake, "--stt-mode", mode, *SHORT_DEADLINES)
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, piper_16k(TEXT))
        other = await describe(server.port)  # the server goes on
    assert result.error is None
    assert result.transcript is not None
    assert speech.normalize_text(result.transcript) == speech.normalize_text(TEXT)
    assert result.types[-2:] == ["transcript", "transcript-stop"]
    assert other.asr[0].name == "openai-stt"
    (line,) = fallback_lines(caplog, "OpenAI transcription failed")
    assert f"({code})" in line and "transcribing this utterance locally" in line
    assert API_KEY not in caplog.text
    if mode == "http":
        assert fake.http_errors == []  # OpenAI was asked first


async def test_after_a_fallback_the_next_utterance_skips_openai_for_a_while(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake.hang = True
    settings = fallback_settings(fake, *SHORT_DEADLINES)
    async with running_server(settings) as server:
        assert server.port is not None
        first = await ha_transcribe(server.port, piper_16k(TEXT))
        sessions_after_first = len(fake.realtime_sessions)
        second = await ha_transcribe(server.port, piper_16k("Lock the front door."))
    assert sessions_after_first >= 1
    assert len(fake.realtime_sessions) == sessions_after_first  # not tried again
    assert first.transcript is not None and second.transcript is not None
    assert speech.normalize_text(second.transcript) == "lock the front door"
    assert len(fallback_lines(caplog, "OpenAI transcription failed")) == 1
    (held,) = fallback_lines(caplog, "Transcribing locally: OpenAI failed")
    assert "(timeout)" in held


async def test_with_retry_after_0_openai_is_tried_for_every_utterance(fake: FakeOpenAI) -> None:
    fake.hang = True
    settings = fallback_settings(fake, *SHORT_DEADLINES, "--fallback-retry-after", "0")
    async with running_server(settings) as server:
        assert server.port is not None
        for _ in range(2):
            result = await ha_transcribe(server.port, piper_16k(TEXT))
            assert result.transcript is not None
            assert speech.normalize_text(result.transcript) == speech.normalize_text(TEXT)
    assert len(fake.realtime_sessions) == 2


async def test_a_refused_key_is_an_error_not_a_fallback(fake: FakeOpenAI) -> None:
    """Not an outage: the user must fix the key, a local answer would hide it."""
    settings = make_settings(
        fake.base_url, "--fallback", "local", api_key="sk-wrong-key-0000000000-secret"
    )
    async with running_server(settings) as server:
        assert server.port is not None
        stt = await ha_transcribe(server.port, piper_16k(TEXT))
        tts = await ha_synthesize_stream(server.port, REPLY)
    assert stt.error is not None and stt.error.code == "auth-failed"
    assert tts.error is not None and tts.error.code == "auth-failed"


async def test_impossible_audio_is_an_error_not_a_fallback(fake: FakeOpenAI) -> None:
    fake.reject_connections = True
    async with running_server(fallback_settings(fake)) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, b"\x00" * 640, rate=0)
    assert result.error is not None and result.error.code == "bad-audio-format"


async def test_openai_deltas_are_not_repeated_by_the_fallback(fake: FakeOpenAI) -> None:
    """OpenAI answers normally: the fallback changes nothing (one set of deltas)."""
    async with running_server(fallback_settings(fake)) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, b"\x01\x00" * 8000)
    chunks = [e.data["text"] for e in result.events if e.type == "transcript-chunk"]
    assert "".join(chunks) == "hello world" == result.transcript


async def test_info_names_openai_and_the_local_fallback(fake: FakeOpenAI) -> None:
    async with running_server(fallback_settings(fake)) as server:
        assert server.port is not None
        info = await describe(server.port)
    assert info.asr[0].name == "openai-stt" and info.tts[0].name == "openai-tts"
    assert info.asr[0].models[0].attribution.name == "OpenAI"
    assert "local Whisper tiny.en if OpenAI fails" in (info.asr[0].description or "")
    assert "local Piper en_US-joe-medium if OpenAI fails" in (info.tts[0].description or "")
    assert "alloy" in [voice.name for voice in info.tts[0].voices]


# ------------------------------------------------------------------------ text to speech


@pytest.mark.parametrize("fault", ["refuse", "500", "hang"])
async def test_reply_is_spoken_by_piper_in_one_format_while_openai_is_out(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    if fault == "refuse":
        fake.reject_connections = True
    elif fault == "hang":
        fake.hang = True
    else:
        fake.http_errors = [(500, None)] * 3
    async with running_server(fallback_settings(fake, *SHORT_DEADLINES)) as server:
        assert server.port is not None
        result = await ha_synthesize_stream(server.port, REPLY, voice="nova")
    assert result.error is None
    assert result.types[0] == "audio-start"
    assert result.types.count("audio-start") == 1
    assert result.types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert result.formats == {(24000, 2, 1)}  # Piper's 22,050 Hz resampled: one WAV header
    await asyncio.to_thread(assert_heard, result.audio, "".join(REPLY))
    assert len(fallback_lines(caplog, "OpenAI speech failed")) >= 1
    assert API_KEY not in caplog.text


async def test_reply_mixes_openai_and_piper_in_one_format(fake: FakeOpenAI) -> None:
    """The first sentence is OpenAI's (real speech at 24 kHz); the request for the second
    gets a 500 and Piper speaks it: one audio-start, one format, the words in order."""

    def speak_then_fail_the_next_request(text: str, voice: str) -> bytes:
        fake.http_errors.append((500, None))  # the next /v1/audio/* request fails
        return piper_24k(text)

    fake.synthesizer = speak_then_fail_the_next_request
    settings = fallback_settings(fake, "--tts-lookahead", "1")
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_synthesize_stream(
            server.port, ["Turn on the kitchen lights. ", "Then lock the front door."]
        )
    assert result.error is None
    assert result.types.count("audio-start") == 1
    assert result.formats == {(24000, 2, 1)}
    assert [r["input"] for r in fake.speech_requests] == ["Turn on the kitchen lights."]
    assert fake.http_errors == []  # the second sentence was asked of OpenAI, and failed
    await asyncio.to_thread(
        assert_heard, result.audio, "Turn on the kitchen lights. Then lock the front door."
    )


async def test_openai_breaking_off_mid_sentence_never_repeats_words(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenAI sends a sentence's speech, then stops answering before the body ends: that
    sentence ends there (no error, no replay), the next one is Piper's."""
    first = "Turn on the kitchen lights."
    # Synthesized before the server starts: the read deadline (0.5 s) counts from the
    # request, and the fake answers at once with the stored audio.
    stored = {first: piper_24k(first) + bytes(PCM_24K_MONO.bytes_for_ms(3000))}
    fake.synthesizer = lambda text, voice: stored[text]
    fake.tts_chunk_bytes = PCM_24K_MONO.bytes_for_ms(2500)  # the speech, then a pause
    fake.speech_pause = asyncio.Event()  # never set: the rest of the body never comes
    settings = fallback_settings(fake, "--tts-lookahead", "1", *SHORT_DEADLINES)
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_synthesize_stream(server.port, [f"{first} ", "Then lock the front door."])
    assert result.error is None
    assert result.types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert result.types.count("audio-start") == 1
    assert result.formats == {(24000, 2, 1)}
    await asyncio.to_thread(
        assert_heard, result.audio, "Turn on the kitchen lights. Then lock the front door."
    )
    (line,) = [r for r in caplog.records if "of a piece's audio" in r.getMessage()]
    assert line.levelno == logging.WARNING
    # A read deadline or a connection broken by it, depending on where the read stopped.
    assert "(timeout)" in line.getMessage() or "(upstream-unavailable)" in line.getMessage()
    assert len(fake.speech_requests) == 1  # the second sentence went straight to Piper


async def test_plain_synthesize_falls_back_too(fake: FakeOpenAI) -> None:
    fake.reject_connections = True
    async with running_server(fallback_settings(fake)) as server:
        assert server.port is not None
        result = await ha_synthesize(server.port, "Good night.")
    assert result.error is None
    assert result.types[0] == "audio-start" and result.types[-1] == "audio-stop"
    assert result.formats == {(24000, 2, 1)}
    samples = np.frombuffer(result.audio, "<i2")
    assert samples.size > PCM_24K_MONO.rate // 2  # at least half a second of speech
    await asyncio.to_thread(assert_heard, result.audio, "Good night.")


async def test_fallback_none_reports_the_outage(fake: FakeOpenAI) -> None:
    fake.reject_connections = True
    settings = make_settings(fake.base_url, "--fallback", "none", "--openai-max-retries", "0")
    async with running_server(settings) as server:
        assert server.port is not None
        assert server.engines.plan.fallback is False
        stt = await ha_transcribe(server.port, piper_16k(TEXT))
        tts = await ha_synthesize_stream(server.port, REPLY)
    assert stt.error is not None and stt.error.code == "upstream-unavailable"
    assert tts.error is not None and tts.error.code == "upstream-unavailable"
