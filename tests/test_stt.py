"""Speech to text through the real server, driven as Home Assistant drives it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import describe, ha_transcribe, make_settings, running_server
from tests.utterances import dominant_hz, piper_16k, tone, use_whisper
from wyoming_openai.audio import PCM_24K_MONO, AudioFormat
from wyoming_openai.resample import AudioConverter

SPEECH_TEXTS = [
    "Turn on the kitchen lights.",
    "What is the weather like tomorrow?",
    "Lock the front door and close the garage.",
]


async def test_home_assistant_transcription_streams_transcript_events(
    fake: FakeOpenAI, port: int
) -> None:
    result = await ha_transcribe(port, tone(300, 1.0, 16000))
    assert result.types[0] == "transcript-start"
    assert result.types[-2:] == ["transcript", "transcript-stop"]
    chunks = [e.data["text"] for e in result.events if e.type == "transcript-chunk"]
    assert "".join(chunks) == "hello world" == result.transcript
    assert result.events[-2].data.get("language") == "en"

    (session,) = fake.realtime_sessions
    assert session.query.get("intent") == "transcription"
    assert "model" not in session.query
    config = session.session_config
    assert config is not None and config["type"] == "transcription"
    audio_in = config["audio"]["input"]
    assert audio_in["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_in["turn_detection"] is None
    assert audio_in["transcription"]["model"] == "gpt-live-transcribe"  # the default
    assert audio_in["transcription"]["languages"] == ["en"]
    assert len(session.commits) == 1


@pytest.mark.parametrize("text", SPEECH_TEXTS)
async def test_real_speech_reaches_openai_intelligible(
    fake: FakeOpenAI, port: int, text: str
) -> None:
    """Piper speech at 16 kHz in 10 ms chunks -> 24 kHz upstream -> Whisper gets the words."""
    use_whisper(fake)
    result = await ha_transcribe(port, piper_16k(text))
    print(f"\nreal speech: {text!r} -> {result.transcript!r}")
    assert result.transcript is not None
    assert speech.normalize_text(result.transcript) == speech.normalize_text(text)


async def test_real_speech_over_http_mode(fake: FakeOpenAI) -> None:
    use_whisper(fake)
    text = SPEECH_TEXTS[0]
    async with running_server(make_settings(fake.base_url, "--stt-mode", "http")) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, piper_16k(text))
    assert result.transcript is not None
    assert speech.normalize_text(result.transcript) == speech.normalize_text(text)
    assert "transcript-chunk" in result.types  # stream=true deltas are passed on
    (request,) = fake.transcription_requests
    assert request["model"] == "gpt-transcribe"  # the HTTP default
    assert str(request.get("stream")).lower() == "true"
    assert fake.realtime_sessions == []


async def test_audio_sent_before_the_session_is_ready_all_arrives_in_order(
    fake: FakeOpenAI, port: int
) -> None:
    """2 s of audio sent as fast as TCP allows: it is all queued while the session connects,
    then reaches the service complete and in order (bit-exact against one-shot conversion)."""
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(32000) * 3000).astype("<i2").tobytes()
    await ha_transcribe(port, pcm)
    converter = AudioConverter(AudioFormat(16000, 2, 1), PCM_24K_MONO)
    expected = converter.convert(pcm) + converter.flush()
    (session,) = fake.realtime_sessions
    assert bytes(session.audio) == expected


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("channels", [1, 2])
async def test_client_formats_are_resampled_to_24k_keeping_the_tone(
    fake: FakeOpenAI, port: int, rate: int, width: int, channels: int
) -> None:
    pcm = tone(1000, 0.5, rate, width, channels)
    result = await ha_transcribe(port, pcm, rate=rate, width=width, channels=channels)
    assert result.transcript == "hello world"
    (session,) = fake.realtime_sessions
    assert abs(len(session.audio) - PCM_24K_MONO.bytes_for_ms(500)) <= PCM_24K_MONO.bytes_for_ms(2)
    assert abs(dominant_hz(bytes(session.audio)) - 1000) < 5


async def test_under_100_ms_gives_an_empty_transcript_without_committing(
    fake: FakeOpenAI, port: int
) -> None:
    result = await ha_transcribe(port, tone(300, 0.05, 16000))
    assert result.error is None
    assert result.transcript == ""
    assert result.types[-1] == "transcript-stop"
    assert all(session.commits == [] for session in fake.realtime_sessions)


async def test_no_audio_at_all_gives_an_empty_transcript(port: int) -> None:
    result = await ha_transcribe(port, b"")
    assert result.transcript == ""


async def test_names_and_terms_bias_recognition(fake: FakeOpenAI, port: int) -> None:
    request = Transcribe(
        language="en", transcript_names=["Zoë", "Kitchen Island"], transcript_terms=["scene"]
    )
    await ha_transcribe(port, tone(300, 0.5, 16000), transcribe=request)
    (session,) = fake.realtime_sessions
    assert session.session_config is not None
    transcription = session.session_config["audio"]["input"]["transcription"]
    assert transcription["keywords"] == ["Zoë", "Kitchen Island", "scene"]  # gpt-live-transcribe


async def test_keyword_models_get_languages_and_keywords(fake: FakeOpenAI) -> None:
    settings = make_settings(fake.base_url, "--stt-model", "gpt-transcribe")
    request = Transcribe(language="de", transcript_names=["Zoë"], transcript_terms=["Szene"])
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000), transcribe=request)
    assert result.transcript == "hello world"
    (session,) = fake.realtime_sessions
    assert session.session_config is not None
    transcription = session.session_config["audio"]["input"]["transcription"]
    assert transcription["languages"] == ["de"]
    assert transcription["keywords"] == ["Zoë", "Szene"]
    assert "language" not in transcription


async def test_request_language_wins_over_configured(fake: FakeOpenAI) -> None:
    async with running_server(make_settings(fake.base_url, "--stt-language", "fr")) as server:
        assert server.port is not None
        await ha_transcribe(server.port, tone(300, 0.5, 16000), language="de")
        await ha_transcribe(server.port, tone(300, 0.5, 16000), language=None)
    languages = [
        s.session_config["audio"]["input"]["transcription"].get("languages")
        for s in fake.realtime_sessions
        if s.session_config
    ]
    assert languages == [["de"], ["fr"]]


async def test_generic_client_without_transcribe(fake: FakeOpenAI, port: int) -> None:
    """Other Wyoming clients may start with audio-start; that opens the session too."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for start in range(0, 32000, 640):
            chunk = tone(300, 1.0, 16000)[start : start + 640]
            await client.write_event(
                AudioChunk(rate=16000, width=2, channels=1, audio=chunk).event()
            )
        await client.write_event(AudioStop().event())
        types = []
        while "transcript-stop" not in types:
            event = await asyncio.wait_for(client.read_event(), 10)
            assert event is not None
            types.append(event.type)
    assert "transcript" in types


async def test_two_utterances_on_one_connection(fake: FakeOpenAI, port: int) -> None:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for _ in range(2):
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            await client.write_event(
                AudioChunk(rate=16000, width=2, channels=1, audio=tone(300, 0.5, 16000)).event()
            )
            await client.write_event(AudioStop().event())
            while True:
                event = await asyncio.wait_for(client.read_event(), 10)
                assert event is not None
                if event.type == "transcript-stop":
                    break
    assert len(fake.realtime_sessions) == 2


async def test_bad_api_key_is_a_clear_error_without_the_key(fake: FakeOpenAI) -> None:
    wrong_key = "sk-wrong-key-9876543210-secret"
    settings = make_settings(fake.base_url, api_key=wrong_key)
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(300, 0.5, 16000))
    assert result.error is not None
    assert result.error.code == "auth-failed"
    assert wrong_key not in result.error.text


async def test_retired_model_moves_to_the_current_one_within_the_utterance(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_server(make_settings(fake.base_url, "--stt-model", "retired-model")) as srv:
        assert srv.port is not None
        first = await ha_transcribe(srv.port, tone(300, 0.5, 16000))
        second = await ha_transcribe(srv.port, tone(300, 0.5, 16000))
        info = await describe(srv.port)
    assert first.transcript == second.transcript == "hello world"
    models = [
        [
            e["session"]["audio"]["input"]["transcription"]["model"]
            for e in session.client_events
            if e["type"] == "session.update"
        ]
        for session in fake.realtime_sessions
    ]
    assert models == [["retired-model", "gpt-live-transcribe"], ["gpt-live-transcribe"]]
    assert sum("retired-model is retired" in r.message for r in caplog.records) == 1
    assert info.asr[0].models[0].name == "gpt-live-transcribe"


@pytest.mark.parametrize(
    ("rate", "width", "channels"), [(0, 2, 1), (16000, 5, 1), (16000, 2, 0), (400000, 2, 1)]
)
async def test_impossible_audio_format_is_an_error_and_the_server_goes_on(
    port: int, rate: int, width: int, channels: int
) -> None:
    result = await ha_transcribe(port, b"\x00" * 640, rate=rate, width=width, channels=channels)
    assert result.error is not None
    assert result.error.code == "bad-audio-format"
    assert result.types.count("error") == 1
    await describe(port)


async def test_audio_without_audio_start_is_an_error(port: int) -> None:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(
            AudioChunk(rate=16000, width=2, channels=1, audio=b"\x00" * 320).event()
        )
        event = await asyncio.wait_for(client.read_event(), 10)
        assert event is not None and Error.is_type(event.type)
        assert Error.from_event(event).code == "audio-without-start"
    await describe(port)


async def test_one_failing_client_does_not_touch_another(fake: FakeOpenAI, port: int) -> None:
    good = ha_transcribe(port, tone(300, 1.0, 16000), realtime=True)
    bad = ha_transcribe(port, b"\x00" * 640, rate=0)
    good_result, bad_result = await asyncio.gather(good, bad)
    assert bad_result.error is not None
    assert good_result.error is None
    assert good_result.transcript == "hello world"


async def test_http_mode_with_a_model_that_does_not_stream(fake: FakeOpenAI) -> None:
    settings = make_settings(fake.base_url, "--stt-mode", "http", "--stt-model", "whisper-1")
    request = Transcribe(language="en", transcript_names=["Zoë"])
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, tone(300, 1.0, 16000), transcribe=request)
    assert result.transcript == "hello world"
    assert result.types == ["transcript-start", "transcript", "transcript-stop"]
    (upload,) = fake.transcription_requests
    assert upload["model"] == "whisper-1"
    assert str(upload.get("stream", "false")).lower() != "true"
    assert "Zoë" in upload["prompt"]
    assert upload["language"] == "en"
