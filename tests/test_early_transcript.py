"""``stt.early_transcript``: the server ends the utterance itself, without ``audio-stop``.

Driven as Home Assistant drives a program whose Info says ``requires_external_vad:
false``: its own voice detection is off, so it streams the microphone (speech, then the
room) and reads concurrently, taking the first ``transcript``, even one sent before
``audio-stop`` (Home Assistant 2026.11 ``homeassistant/components/wyoming/stt.py``). Real
speech (Piper) is transcribed by Whisper in the fake.
"""

from __future__ import annotations

import asyncio
import wave
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import READ_TIMEOUT, describe, dumped_wavs, make_settings, running_server
from tests.utterances import (
    COMMANDS,
    RATE,
    command,
    eventually,
    paused,
    room_noise,
    sound_bounds,
    spoken,
    use_whisper,
)
from wyoming_openai.audio import PCM_24K_MONO
from wyoming_openai.endpointing import NO_SPEECH_SECONDS

pytestmark = pytest.mark.slow  # real speech, streamed at its own pace

CHUNK_BYTES = 320
"""10 ms at 16 kHz s16le mono, what Home Assistant sends."""

EARLY = ("--stt-early-transcript",)


@dataclass
class StreamResult:
    """What a client that never sends ``audio-stop`` before the transcript saw."""

    events: list[Event] = field(default_factory=list)
    chunks_sent: int = 0
    """Chunks sent before the transcript arrived."""
    chunks_total: int = 0
    after: list[Event] = field(default_factory=list)
    """Events after the transcript, up to the ``info`` answering a ``describe``."""

    @property
    def transcript(self) -> str | None:
        for event in self.events:
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text
        return None


async def stream_until_transcript(
    port: int, pcm: bytes, *, realtime: bool = False, leftover_chunks: int = 20
) -> StreamResult:
    """``transcribe``, ``audio-start``, then 10 ms chunks of ``pcm`` until the transcript
    arrives (paced in real time, or all at once), never ``audio-stop`` before it. Then, as
    a client that does not stop at once: ``leftover_chunks`` more chunks of room noise,
    ``audio-stop``, and ``describe``; everything the server sends until ``info`` is kept
    in :attr:`StreamResult.after`."""
    result = StreamResult()
    chunks = [pcm[i : i + CHUNK_BYTES] for i in range(0, len(pcm), CHUNK_BYTES)]
    result.chunks_total = len(chunks)
    got_transcript = asyncio.Event()
    async with AsyncTcpClient("127.0.0.1", port) as client:

        async def read() -> None:
            while True:
                event = await client.read_event()
                assert event is not None, "connection closed before the transcript"
                result.events.append(event)
                if event.type == "error":
                    return
                if Transcript.is_type(event.type):
                    got_transcript.set()
                if event.type == "transcript-stop":
                    return

        reader = asyncio.create_task(read())
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, chunk in enumerate(chunks):
            if got_transcript.is_set() or reader.done():
                break
            await client.write_event(
                AudioChunk(rate=RATE, width=2, channels=1, audio=chunk).event()
            )
            result.chunks_sent = index + 1
            if realtime:
                await asyncio.sleep(max(0.0, started + (index + 1) / 100 - loop.time()))
        await asyncio.wait_for(reader, READ_TIMEOUT)
        noise = room_noise(leftover_chunks / 100, seed=7)
        for start in range(0, len(noise), CHUNK_BYTES):
            chunk = noise[start : start + CHUNK_BYTES]
            await client.write_event(
                AudioChunk(rate=RATE, width=2, channels=1, audio=chunk).event()
            )
        await client.write_event(AudioStop().event())
        await client.write_event(Describe().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
            assert event is not None, "connection closed after the transcript"
            result.after.append(event)
            if Info.is_type(event.type):
                break
    return result


def same_words(transcript: str | None, *texts: str) -> bool:
    return speech.normalize_text(transcript or "") == speech.normalize_text(" ".join(texts))


def upstream_bytes(seconds: float) -> int:
    """Bytes of ``seconds`` of audio as sent upstream (24 kHz s16le mono)."""
    return PCM_24K_MONO.bytes_for_ms(seconds * 1000)


def dumped_frames(directory: Path) -> int:
    """Frames of the one utterance written to the audio dump ``directory``."""
    (dump,) = directory.glob("*.wav")
    with wave.open(str(dump), "rb") as wav:
        return wav.getnframes()


def quietly_ignored(result: StreamResult) -> bool:
    """The audio after the transcript and the ``audio-stop`` got no answer at all."""
    return [event.type for event in result.after] == ["info"]


# ----------------------------------------------------------------------------- realtime


@pytest.mark.parametrize("silence", ["0.2", "0.3", "0.6"])
async def test_transcript_arrives_without_audio_stop(fake: FakeOpenAI, silence: str) -> None:
    """Speech, then the room for 3 s and no audio-stop: the transcript comes anyway, from
    one commit holding all the speech, whether the utterance ends before, with or after
    the speculative commit (0.3 s); the audio and audio-stop after it are ignored."""
    use_whisper(fake)
    text = COMMANDS[0]
    settings = make_settings(fake.base_url, *EARLY, "--stt-early-transcript-silence", silence)
    async with running_server(settings) as server:
        assert server.port is not None
        result = await stream_until_transcript(server.port, command(text, tail_seconds=3.0))

    assert same_words(result.transcript, text)
    assert quietly_ignored(result)
    (session,) = fake.realtime_sessions
    (commit,) = session.commits  # not committed twice
    last_sound = upstream_bytes(0.2) + upstream_bytes(sound_bounds(spoken(text))[1] / 2 / RATE)
    assert last_sound < len(commit)  # the tail of the speech is in it
    assert bytes(session.audio).startswith(commit)
    assert len(session.audio) < upstream_bytes(0.2 + 3.0)  # it ended inside the room noise


async def test_paced_like_a_microphone_the_transcript_comes_while_streaming(
    fake: FakeOpenAI,
) -> None:
    """Speech, then 30 s of the room streamed in real time: only the transcript stops the
    stream (however long Whisper takes), and the utterance ended inside the first 3 s of
    room (by its silence, not by the longest command)."""
    use_whisper(fake)
    text = COMMANDS[2]
    async with running_server(make_settings(fake.base_url, *EARLY)) as server:
        assert server.port is not None
        pcm = command(text, tail_seconds=30.0)
        result = await stream_until_transcript(server.port, pcm, realtime=True)

    assert same_words(result.transcript, text)
    assert result.chunks_sent < result.chunks_total  # the room was still streaming
    assert quietly_ignored(result)
    (session,) = fake.realtime_sessions
    assert len(session.audio) < upstream_bytes(0.2 + len(spoken(text)) / 2 / RATE + 3.0)


async def test_a_pause_shorter_than_the_silence_does_not_cut_the_command(
    fake: FakeOpenAI,
) -> None:
    """0.6 s of silence between "Turn on the" and "kitchen lights" (the speculative commit
    comes inside it) with the default 0.7 s: both parts are in the transcript."""
    use_whisper(fake)
    async with running_server(make_settings(fake.base_url, *EARLY)) as server:
        assert server.port is not None
        pcm = paused(COMMANDS[0], 0.6, tail_seconds=3.0)
        result = await stream_until_transcript(server.port, pcm)

    heard = speech.normalize_text(result.transcript or "")
    assert heard.startswith("turn on")  # Whisper hears "the" alone as "that" at times
    assert heard.endswith("kitchen lights")  # the part after the pause is there


async def test_nobody_speaks_gives_an_empty_transcript_without_transcribing(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    """10 s of the room: after a few seconds of it (not all 10), an empty transcript."""
    use_whisper(fake)
    settings = make_settings(fake.base_url, *EARLY, "--audio-dump-dir", str(tmp_path))
    async with running_server(settings) as server:
        assert server.port is not None
        result = await stream_until_transcript(server.port, room_noise(10.0))
        await dumped_wavs(tmp_path, 1)  # written in a worker thread

    assert result.transcript == ""
    assert [event.type for event in result.events] == [
        "transcript-start",
        "transcript",
        "transcript-stop",
    ]
    assert all(not session.commits for session in fake.realtime_sessions)
    # the utterance as the server took it (the audio dump)
    assert dumped_frames(tmp_path) <= PCM_24K_MONO.rate * NO_SPEECH_SECONDS
    assert quietly_ignored(result)


async def test_speech_that_never_stops_is_transcribed_up_to_the_limit(
    fake: FakeOpenAI,
) -> None:
    """Speech going on past the longest utterance (here 3 s): the transcript of what was
    heard, not an error."""
    use_whisper(fake)
    first, second = COMMANDS[6], COMMANDS[19]
    settings = make_settings(fake.base_url, *EARLY, "--limits-max-utterance-seconds", "3")
    async with running_server(settings) as server:
        assert server.port is not None
        pcm = spoken(first) + spoken(second)
        assert len(pcm) > 3.5 * 2 * RATE
        result = await stream_until_transcript(server.port, pcm + room_noise(3.0))

    assert result.events[-1].type == "transcript-stop"
    heard = speech.normalize_text(result.transcript or "").split()
    assert heard[:4] == ["turn", "off", "the", "lights"]
    assert "alarm" not in heard  # the end of the second command is past the limit
    (session,) = fake.realtime_sessions
    # the answer's item (re-committed from the start after the pause between the two)
    assert len(session.commits[-1]) <= upstream_bytes(3.0) + upstream_bytes(0.02)
    assert quietly_ignored(result)


async def test_off_by_default_nothing_is_answered_before_audio_stop(fake: FakeOpenAI) -> None:
    """The default: even with the speech transcribed upstream (speculative commit, whose
    deltas go out as transcript-chunks at once), the transcript waits for audio-stop."""
    use_whisper(fake)
    text = COMMANDS[1]
    async with running_server(make_settings(fake.base_url)) as server:
        assert server.port is not None
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            pcm = command(text, tail_seconds=2.0)
            for start in range(0, len(pcm), CHUNK_BYTES):
                audio = pcm[start : start + CHUNK_BYTES]
                await client.write_event(
                    AudioChunk(rate=RATE, width=2, channels=1, audio=audio).event()
                )
            session = await fake.wait_for_realtime_session(1)
            await eventually(lambda: session.transcripts, READ_TIMEOUT)
            # The server has the whole transcript once its chunks spell it out: an answer
            # would be due by then; describe -> info then shows whether one left.
            before: list[str] = []
            chunks = ""
            while chunks.strip() != " ".join(t.strip() for t in session.transcripts):
                event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
                assert event is not None
                before.append(event.type)
                if TranscriptChunk.is_type(event.type):
                    chunks += TranscriptChunk.from_event(event).text
            await client.write_event(Describe().event())
            while before[-1] != "info":
                event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
                assert event is not None
                before.append(event.type)
            assert "transcript" not in before
            await client.write_event(AudioStop().event())
            events = []
            while not events or events[-1].type != "transcript-stop":
                event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
                assert event is not None
                events.append(event)
    (transcript,) = [Transcript.from_event(e).text for e in events if e.type == "transcript"]
    assert same_words(transcript, text)


# ----------------------------------------------------------------------------- Info


async def test_info_turns_home_assistant_vad_off_only_when_on(fake: FakeOpenAI) -> None:
    async with running_server(make_settings(fake.base_url)) as server:
        assert server.port is not None
        default = await describe(server.port)
    async with running_server(make_settings(fake.base_url, *EARLY)) as server:
        assert server.port is not None
        early = await describe(server.port)
    assert default.asr[0].requires_external_vad is True
    assert early.asr[0].requires_external_vad is False


# ----------------------------------------------------------------------------- other engines


async def test_http_engine_answers_without_audio_stop(fake: FakeOpenAI) -> None:
    use_whisper(fake)
    text = COMMANDS[2]
    settings = make_settings(fake.base_url, *EARLY, "--stt-mode", "http")
    async with running_server(settings) as server:
        assert server.port is not None
        result = await stream_until_transcript(server.port, command(text, tail_seconds=3.0))
    assert same_words(result.transcript, text)
    assert len(fake.transcription_requests) == 1
    assert quietly_ignored(result)


async def test_realtime_without_speculative_commit_answers_without_audio_stop(
    fake: FakeOpenAI,
) -> None:
    """The session runs no detector: the utterance runs its own (one commit, at the end)."""
    use_whisper(fake)
    text = COMMANDS[3]
    settings = make_settings(fake.base_url, *EARLY)
    settings = settings.model_copy(
        update={"stt": settings.stt.model_copy(update={"speculative_commit": False})}
    )
    async with running_server(settings) as server:
        assert server.port is not None
        result = await stream_until_transcript(server.port, command(text, tail_seconds=3.0))
    assert same_words(result.transcript, text)
    (session,) = fake.realtime_sessions
    (commit,) = session.commits
    assert commit == bytes(session.audio)


async def test_local_fallback_answers_without_audio_stop(fake: FakeOpenAI) -> None:
    """OpenAI refuses connections: the local engine transcribes, still without audio-stop
    (the end is heard by the OpenAI session's detector, kept by the fallback)."""
    fake.reject_connections = True
    text = COMMANDS[0]
    settings = make_settings(
        fake.base_url, *EARLY, "--fallback", "local", "--openai-max-retries", "0"
    )
    async with running_server(settings) as server:
        assert server.port is not None
        first = await stream_until_transcript(server.port, command(text, tail_seconds=3.0))
        # OpenAI is now skipped for a while: the local engine serves on its own
        second = await stream_until_transcript(server.port, command(text, tail_seconds=3.0))
    assert same_words(first.transcript, text)
    assert same_words(second.transcript, text)
    assert quietly_ignored(first) and quietly_ignored(second)
