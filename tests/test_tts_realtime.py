"""Text to speech through a realtime session, and ``tts.mode auto`` moving there by itself.

Driven as Home Assistant drives it (``tests/harness.py``) against the fake's realtime
conversation session, which speaks with the Piper voice where a test needs real speech.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize

from tests import speech
from tests.fake_openai import FakeOpenAI, RealtimeSessionRecord, default_synthesizer
from tests.harness import (
    describe,
    ha_synthesize,
    ha_synthesize_stream,
    make_settings,
    running_server,
)
from wyoming_openai.catalogue import REALTIME_VOICES
from wyoming_openai.tts.realtime import word_error_rate

WAIT = 10.0
REALTIME = ("--tts-mode", "realtime")
RETIRED_SPEECH = {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"}


async def wait_until(predicate: Callable[[], object]) -> None:
    """Poll ``predicate()`` until true: the fake's records change with no event to await."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - plain lists, nothing to wait on
            await asyncio.sleep(0.01)


def speech_sessions(fake: FakeOpenAI) -> list[RealtimeSessionRecord]:
    """Realtime conversation (speech) sessions, in connection order."""
    return [s for s in fake.realtime_sessions if "model" in s.query]


def voices_of(record: RealtimeSessionRecord) -> str | None:
    config = record.session_config or {}
    return config.get("audio", {}).get("output", {}).get("voice")


@pytest.mark.parametrize("stream", [False, True])
async def test_real_speech_through_a_realtime_session(fake: FakeOpenAI, stream: bool) -> None:
    """Plain and Home Assistant's streaming order: the audio is the text, spoken."""
    fake.synthesizer = speech.piper_synthesizer
    text = "The garage door is open. Shall I close it?"
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        if stream:
            result = await ha_synthesize_stream(
                server.port, ["The garage door", " is open. Shall I", " close it?"]
            )
        else:
            result = await ha_synthesize(server.port, text)
    assert result.error is None
    assert result.types.count("audio-start") == 1
    assert result.formats == {(24000, 2, 1)}
    assert all(len(e.payload or b"") % 2 == 0 for e in result.events if e.type == "audio-chunk")
    heard = await asyncio.to_thread(speech.transcribe_speech, result.audio, 24000, "en")
    print(f"\nreal speech realtime TTS ({'stream' if stream else 'plain'}): {heard!r}")
    assert speech.normalize_text(heard) == speech.normalize_text(text)
    assert fake.speech_requests == []  # /v1/audio/speech is never used in realtime mode
    (first, *_) = speech_sessions(fake)
    assert first.query == {"model": "gpt-realtime-2.1-mini"}
    config = first.session_config
    assert config is not None and config["type"] == "realtime"
    assert config["output_modalities"] == ["audio"]
    assert config["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert "word for word" in config["instructions"]
    spoken = [text for record in speech_sessions(fake) for text in record.spoken]
    if stream:
        assert sorted(spoken) == sorted(["The garage door is open.", "Shall I close it?"])
    else:
        assert spoken == [text]


async def test_streamed_sentences_keep_their_order(fake: FakeOpenAI) -> None:
    """Several sentences streamed at once come back as one audio in the text's order."""
    fake.tts_chunk_interval = 0.01
    sentences = ["First one here.", "Then a second.", "A third follows.", "The end."]
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        result = await ha_synthesize_stream(server.port, [f"{s} " for s in sentences])
    assert result.error is None
    assert result.types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert result.audio == b"".join(default_synthesizer(s, "alloy") for s in sentences)


async def test_voice_selection_and_session_reuse(fake: FakeOpenAI) -> None:
    settings = make_settings(fake.base_url, *REALTIME, "--tts-voice", "coral")
    async with running_server(settings) as server:
        assert server.port is not None
        info = await describe(server.port)
        first = await ha_synthesize(server.port, "One.")
        second = await ha_synthesize(server.port, "Two.")
        other = await ha_synthesize(server.port, "Three.", voice="cedar")
        legacy = await ha_synthesize(server.port, "Four.", voice="fable")
    assert [v.name for v in info.tts[0].voices] == list(REALTIME_VOICES)
    assert all(r.error is None for r in (first, second, other, legacy))
    assert first.audio == default_synthesizer("One.", "coral")
    sessions = speech_sessions(fake)
    # One session per voice, reused: "fable" (a /v1/audio/speech voice) speaks as the default.
    assert [voices_of(s) for s in sessions] == ["coral", "cedar"]
    assert sessions[0].spoken == ["One.", "Two.", "Four."]
    assert sessions[1].spoken == ["Three."]
    # Each piece's items were deleted again: the conversation never grows.
    await wait_until(lambda: len(sessions[0].deleted_items) == 6)


async def test_client_disconnect_cancels_the_response_upstream(fake: FakeOpenAI) -> None:
    fake.realtime_hold = asyncio.Event()  # the response waits after its first audio
    text = "This is a long announcement that takes a good while to speak aloud."
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Synthesize(text=text).event())
            while True:
                event = await asyncio.wait_for(client.read_event(), WAIT)
                assert event is not None
                if AudioChunk.is_type(event.type):
                    break
        (session,) = speech_sessions(fake)
        await wait_until(lambda: session.cancelled_responses)
        fake.realtime_hold.set()  # the response goes on, and stops
        await wait_until(lambda: session.events_of_type("response.done"))
        cancels = [e for e in session.client_events if e["type"] == "response.cancel"]
        assert len(cancels) == 1
        assert (
            len(session.events_of_type("response.output_audio.delta"))
            < len(default_synthesizer(text, "alloy")) // fake.realtime_delta_bytes
        )
        # The cancelled session is cleaned up and serves the next request.
        after = await ha_synthesize(server.port, "Still here.")
    assert after.error is None
    assert after.audio == default_synthesizer("Still here.", "alloy")
    assert speech_sessions(fake) == [session]


async def test_upstream_error_event_is_a_wyoming_error(fake: FakeOpenAI) -> None:
    fake.realtime_errors = ["rate_limit_exceeded"]
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        result = await ha_synthesize(server.port, "Hello.")
        again = await ha_synthesize(server.port, "Hello again.")
    assert result.error is not None
    assert result.error.code == "rate-limited"
    assert "audio-chunk" not in result.types
    assert again.error is None and again.audio == default_synthesizer("Hello again.", "alloy")


async def test_fidelity_warning_when_the_model_says_something_else(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        with caplog.at_level(logging.WARNING):
            verbatim = await ha_synthesize(server.port, "The lights are off.")
            await wait_until(lambda: len(speech_sessions(fake)[0].deleted_items) == 2)
            assert not [r for r in caplog.records if "verbatim" in r.getMessage()]
            fake.realtime_says = lambda text: f"Of course! {text} Anything else I can do?"
            chatty = await ha_synthesize(server.port, "The door is locked.")
            await wait_until(lambda: len(speech_sessions(fake)[0].deleted_items) == 4)
    assert verbatim.error is None and chatty.error is None
    (warning,) = [r for r in caplog.records if "verbatim" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert "'The door is locked.'" in message
    assert "'Of course! The door is locked. Anything else I can do?'" in message


async def test_auto_mode_moves_to_realtime_when_the_speech_model_is_retired(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """2027-01-06: the speech model answers 404; the same request is spoken by the
    realtime model, and every later one goes straight there."""
    fake.retired_models = RETIRED_SPEECH
    settings = make_settings(fake.base_url, "--tts-realtime-move", "true")
    assert settings.tts.mode == "auto"
    async with running_server(settings) as server:
        assert server.port is not None
        before = await describe(server.port)
        with caplog.at_level(logging.WARNING):
            first = await ha_synthesize(server.port, "Good morning.", voice="nova")
            second = await ha_synthesize_stream(server.port, ["Have a ", "nice day."])
        after = await describe(server.port)
    assert first.error is None and second.error is None
    assert first.audio == default_synthesizer("Good morning.", "alloy")
    assert second.audio == default_synthesizer("Have a nice day.", "alloy")
    assert [r["model"] for r in fake.speech_requests] == ["gpt-4o-mini-tts"]  # asked once
    assert [t for s in speech_sessions(fake) for t in s.spoken] == [
        "Good morning.",
        "Have a nice day.",
    ]
    moved = [r for r in caplog.records if "from now on" in r.getMessage()]
    assert len(moved) == 1 and "gpt-4o-mini-tts" in moved[0].getMessage()
    assert "nova" in [v.name for v in before.tts[0].voices]
    assert [v.name for v in after.tts[0].voices] == list(REALTIME_VOICES)


async def test_auto_mode_keeps_speech_for_compatible_servers(fake: FakeOpenAI) -> None:
    """Any base URL but OpenAI's: a missing model is reported, never moved to realtime."""
    fake.retired_models = RETIRED_SPEECH
    async with running_server(make_settings(fake.base_url)) as server:
        assert server.port is not None
        result = await ha_synthesize(server.port, "Hello.")
    assert result.error is not None
    assert result.error.code == "model-not-found"
    assert speech_sessions(fake) == []


async def test_sessions_are_renewed_before_their_time_limit(fake: FakeOpenAI) -> None:
    """The service says sessions end 1-2 s after they open (``expires_at``; 60 minutes at
    OpenAI): the bridge closes each one itself before then, and speaks on a fresh one."""
    fake.session_expires_in = 2.0
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        await wait_until(lambda: speech_sessions(fake))
        first = speech_sessions(fake)[0]
        await asyncio.wait_for(first.closed.wait(), WAIT)
        result = await ha_synthesize(server.port, "Two.")
    assert result.audio == default_synthesizer("Two.", "alloy")
    assert first.errors_sent == [] and first.close_code == 1000  # the bridge closed it
    assert first.spoken == []
    assert [t for s in speech_sessions(fake) for t in s.spoken] == ["Two."]


async def test_a_session_the_service_ended_while_idle_is_replaced(fake: FakeOpenAI) -> None:
    async with running_server(make_settings(fake.base_url, *REALTIME)) as server:
        assert server.port is not None
        first = await ha_synthesize(server.port, "One.")
        (idle,) = speech_sessions(fake)
        await wait_until(lambda: len(idle.deleted_items) == 2)  # the response is cleaned up
        await fake.expire_realtime_sessions()  # session_expired, then a 1001 close
        await wait_until(lambda: idle.closed.is_set())
        second = await ha_synthesize(server.port, "Two.")
    assert first.error is None and second.error is None
    assert second.audio == default_synthesizer("Two.", "alloy")
    assert [s.spoken for s in speech_sessions(fake)] == [["One."], ["Two."]]


@pytest.mark.parametrize(
    ("reference", "hypothesis", "rate"),
    [
        ("Turn on the kitchen lights.", "turn on the kitchen lights", 0.0),
        ("Don't stop.", "dont stop!", 0.0),
        ("Turn on the kitchen lights.", "Turn off the kitchen lights.", 0.2),
        ("It is open.", "Sure! It is open.", 1 / 3),
    ],
)
def test_word_error_rate_on_normalised_words(reference: str, hypothesis: str, rate: float) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(rate)


async def test_a_speech_only_voice_is_substituted_with_the_local_fallback_on_too(
    fake: FakeOpenAI,
) -> None:
    """The fallback wrapper passes the substitution through: "fable" (a
    ``/v1/audio/speech`` voice) is spoken with the default realtime voice, not refused."""
    settings = make_settings(fake.base_url, *REALTIME, "--fallback", "local")
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_synthesize(server.port, "Four.", voice="fable")
    assert result.error is None
    (session,) = speech_sessions(fake)
    assert session.spoken == ["Four."]
