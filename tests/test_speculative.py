"""Speculative commit and batched appends, through the real server driven as Home
Assistant drives it, with real speech (Piper) transcribed by Whisper in the fake.

Home Assistant ends a command with ``audio-stop`` after 0.7 s of silence; the bridge
commits when its own voice-activity detector hears the end of speech, inside that
silence, so the service is already transcribing when ``audio-stop`` comes.
"""

from __future__ import annotations

import asyncio

import pytest

from tests import speech
from tests.fake_openai import FakeOpenAI, RealtimeSessionRecord
from tests.harness import ha_transcribe, make_settings, running_server
from tests.utterances import (
    COMMANDS,
    RATE,
    command,
    room_noise,
    sound_bounds,
    spoken,
    use_whisper,
)
from wyoming_openai.audio import PCM_24K_MONO, AudioFormat
from wyoming_openai.config_sources import load_settings
from wyoming_openai.resample import AudioConverter

pytestmark = pytest.mark.slow  # real speech through the local voice detector

APPEND = "input_audio_buffer.append"
COMMIT = "input_audio_buffer.commit"


def client_types(session: RealtimeSessionRecord) -> list[str]:
    return [event["type"] for event in session.client_events]


def upstream_bytes(seconds: float) -> int:
    """Bytes of ``seconds`` of audio as sent upstream (24 kHz s16le mono)."""
    return PCM_24K_MONO.bytes_for_ms(seconds * 1000)


def same_words(transcript: str | None, *texts: str) -> bool:
    return speech.normalize_text(transcript or "") == speech.normalize_text(" ".join(texts))


async def test_the_end_of_speech_is_committed_before_audio_stop(
    fake: FakeOpenAI, port: int
) -> None:
    """Speech, then Home Assistant's 0.7 s of room noise: the commit comes while the room
    noise is still streaming, holds all the speech, and its transcript is the answer (no
    second commit of the noise at audio-stop)."""
    use_whisper(fake)
    text = COMMANDS[0]
    result = await ha_transcribe(port, command(text, lead_seconds=0.2))

    assert result.error is None
    assert same_words(result.transcript, text)
    (session,) = fake.realtime_sessions
    (commit,) = session.commits
    types = client_types(session)
    assert APPEND in types[types.index(COMMIT) + 1 :]  # audio went on: audio-stop came later
    last_sound = upstream_bytes(0.2) + upstream_bytes(sound_bounds(spoken(text))[1] / 2 / RATE)
    assert last_sound < len(commit) < len(session.audio) - upstream_bytes(0.2)
    assert bytes(session.audio).startswith(commit)


async def test_speech_that_resumes_after_a_pause_is_transcribed_whole(
    fake: FakeOpenAI, port: int
) -> None:
    """A pause long enough to commit, then more speech: the uncommitted audio is cleared and
    the whole utterance is committed again as one item, whose transcript is the answer."""
    use_whisper(fake)
    first, second = COMMANDS[0], COMMANDS[2]
    result = await ha_transcribe(port, command(first, 0.6, second))

    assert same_words(result.transcript, first, second)
    (session,) = fake.realtime_sessions
    assert len(session.commits) == 2  # the first part early, then everything once more
    assert same_words(session.transcripts[0], first)
    assert same_words(session.transcripts[1], first, second)
    assert "input_audio_buffer.clear" in client_types(session)
    assert session.commits[1].startswith(session.commits[0])  # from the utterance's start
    chunks = [e.data["text"] for e in result.events if e.type == "transcript-chunk"]
    assert "".join(chunks) == result.transcript  # deltas add up to the answer


async def test_speech_going_on_at_audio_stop_is_committed_then(fake: FakeOpenAI, port: int) -> None:
    """Speech resumes after a commit and is still going when audio-stop comes (cut at its
    last sound): the whole utterance is committed again at audio-stop, one item."""
    use_whisper(fake)
    first, second = COMMANDS[1], COMMANDS[2]
    pcm = command(first, 0.6, second, tail_seconds=0.0)
    pcm = pcm[: sound_bounds(pcm)[1]]  # stopped at the last sound
    result = await ha_transcribe(port, pcm)

    assert same_words(result.transcript, first, second)
    (session,) = fake.realtime_sessions
    assert len(session.commits) == 2
    assert client_types(session)[-1] == COMMIT  # the last commit came after all the audio
    assert session.commits[1].startswith(session.commits[0])  # from the utterance's start
    assert bytes(session.audio).endswith(session.commits[1])  # ... to its end


async def test_speculative_commit_can_be_turned_off(fake: FakeOpenAI) -> None:
    use_whisper(fake)
    settings = load_settings(
        ["--uri", "tcp://127.0.0.1:0", "--no-zeroconf", "--fallback", "none"],
        {
            "OPENAI_API_KEY": "sk-test-fake-key-0123456789",
            "OPENAI_BASE_URL": fake.base_url,
            "WYOMING_OPENAI_STT_SPECULATIVE_COMMIT": "false",
            "WYOMING_OPENAI_STT_WARM_SESSIONS": "0",
        },
    )
    assert settings.stt.speculative_commit is False
    text = COMMANDS[1]
    async with running_server(settings) as server:
        assert server.port is not None
        result = await ha_transcribe(server.port, command(text, 0.6, text))
    assert same_words(result.transcript, text, text)
    (session,) = fake.realtime_sessions
    (commit,) = session.commits  # one commit, at audio-stop, of everything
    assert client_types(session)[-1] == COMMIT
    assert commit == bytes(session.audio)


async def test_a_replay_after_a_speculative_commit_commits_the_whole_utterance(
    fake: FakeOpenAI, port: int
) -> None:
    """The connection drops after the speculative commit (during the trailing noise): the
    new session gets the whole utterance, committed once at audio-stop."""
    use_whisper(fake)
    text = COMMANDS[0]

    fake.drop_after_commit_appends = 1  # the first append after the speculative commit

    async def drop_after_the_commit() -> None:
        first = await fake.wait_for_realtime_session(1)
        await first.closed.wait()
        fake.drop_after_commit_appends = None  # the replay's session is left alone

    dropper = asyncio.create_task(drop_after_the_commit())
    result = await ha_transcribe(port, command(text), realtime=True)
    await asyncio.wait_for(dropper, 5)

    assert same_words(result.transcript, text)
    first, second = fake.realtime_sessions[:2]
    assert len(first.commits) == 1  # the speculative one, before the drop
    (commit,) = second.commits
    assert commit == bytes(second.audio)
    assert len(commit) >= len(first.audio)


async def test_audio_goes_up_in_batches_and_arrives_intact(fake: FakeOpenAI, port: int) -> None:
    """10 ms chunks in real time become appends of tens of milliseconds; every byte
    arrives in order, the last batch right before the commit."""
    use_whisper(fake)
    text = COMMANDS[8]
    pcm = room_noise(0.1) + spoken(text)  # speech up to audio-stop: one commit at the end
    result = await ha_transcribe(port, pcm, realtime=True)

    assert same_words(result.transcript, text)
    converter = AudioConverter(AudioFormat(RATE, 2, 1), PCM_24K_MONO)
    (session,) = fake.realtime_sessions
    assert bytes(session.audio) == converter.convert(pcm) + converter.flush()
    chunks = len(pcm) // 320
    assert session.append_count <= chunks // 3
    assert client_types(session)[-2:] == [APPEND, COMMIT]


async def test_speculative_commit_with_the_default_settings(fake: FakeOpenAI) -> None:
    """The defaults (speculative commit, one warm session) work together."""
    use_whisper(fake)
    settings = make_settings(fake.base_url, "--stt-warm-sessions", "1")
    text = COMMANDS[0]
    async with running_server(settings) as server:
        assert server.port is not None
        await fake.wait_for_realtime_session(1)
        result = await ha_transcribe(server.port, command(text))
    assert same_words(result.transcript, text)
    used = [s for s in fake.realtime_sessions if s.commits]
    assert len(used) == 1 and len(used[0].commits) == 1


async def test_a_final_consonant_after_a_silent_closure_is_kept(
    fake: FakeOpenAI, port: int
) -> None:
    """In "locked" the detector hears the end in the silent closure before the final "t";
    the release that follows resumes speech, and the whole utterance is committed again,
    so the answer says "locked", not "lock"."""
    use_whisper(fake)
    text = COMMANDS[5]
    result = await ha_transcribe(port, command(text))

    assert same_words(result.transcript, text)
    (session,) = fake.realtime_sessions
    assert session.commits[-1].startswith(session.commits[0])  # the last one holds it all
