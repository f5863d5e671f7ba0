"""The local engines answer fast: speculative Whisper, Piper's first clause and warm-up,
Whisper's threads.

Speculative transcription is checked by counting the Whisper worker's runs
(``WhisperRunner.runs``): the utterance's audio is sent, the test waits until Whisper has
started on it, and only then sends ``audio-stop`` (Home Assistant's order over TCP).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import (
    API_KEY,
    chunks_of,
    ha_synthesize,
    ha_transcribe,
    local_settings,
    make_settings,
    running_server,
)
from tests.utterances import command, eventually, halves, room_noise, spoken
from wyoming_openai.config_sources import load_settings
from wyoming_openai.server import WyomingOpenAIServer
from wyoming_openai.stt import local_whisper
from wyoming_openai.stt.fallback import FallbackSttEngine
from wyoming_openai.stt.local_whisper import LocalWhisperEngine, WhisperRunner
from wyoming_openai.tts import piper_tts
from wyoming_openai.tts.piper_tts import PiperTtsEngine
from wyoming_openai.tts.sentences import first_clause

TEXT = "Turn off the lights in the kitchen, the hallway, and the bedroom."
WAIT = 30.0
"""Longest a Whisper run is waited for (a hang guard, not a timing assertion)."""


def runner_of(server: WyomingOpenAIServer) -> WhisperRunner:
    stt = server.engines.stt
    local = stt.local if isinstance(stt, FallbackSttEngine) else stt
    assert isinstance(local, LocalWhisperEngine)
    return local.runner


class Utterance:
    """One Home Assistant transcription, sent in steps: audio now, ``audio-stop`` later."""

    def __init__(self, port: int) -> None:
        self._client = AsyncTcpClient("127.0.0.1", port)

    async def __aenter__(self) -> Utterance:
        await self._client.connect()
        await self._client.write_event(Transcribe(language="en").event())
        await self._client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.disconnect()

    async def send(self, pcm: bytes) -> None:
        for chunk in chunks_of(pcm, 16000, 2, 1):
            event = AudioChunk(rate=16000, width=2, channels=1, audio=chunk).event()
            await self._client.write_event(event)

    async def stop(self) -> str:
        """``audio-stop``, then the transcript."""
        await self._client.write_event(AudioStop().event())
        while True:
            event = await asyncio.wait_for(self._client.read_event(), WAIT)
            assert event is not None and event.type != "error", event
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text


@pytest.fixture
async def local_server() -> AsyncIterator[WyomingOpenAIServer]:
    async with running_server(local_settings()) as server:
        yield server


def same_words(heard: str, said: str) -> bool:
    return speech.normalize_text(heard) == speech.normalize_text(said)


# ------------------------------------------------------------------ Whisper threads


def test_whisper_threads_default_to_the_cores_this_process_may_use() -> None:
    settings = local_settings()
    assert LocalWhisperEngine(settings.local, settings.stt).runner.cpu_threads == len(
        os.sched_getaffinity(0)
    )
    settings = local_settings("--local-whisper-threads", "3")
    assert LocalWhisperEngine(settings.local, settings.stt).runner.cpu_threads == 3


# ------------------------------------------------------------------ speculative Whisper


@pytest.mark.slow
async def test_whisper_runs_once_when_speech_ends_and_audio_stop_takes_that_result(
    local_server: WyomingOpenAIServer,
) -> None:
    assert local_server.port is not None
    runner = runner_of(local_server)
    async with Utterance(local_server.port) as utterance:
        before = runner.runs
        await utterance.send(command(TEXT))  # speech, then Home Assistant's 0.7 s of quiet
        await eventually(lambda: runner.runs == before + 1, WAIT)  # before audio-stop
        transcript = await utterance.stop()
    assert same_words(transcript, TEXT)
    assert runner.runs == before + 1  # not run again at audio-stop


@pytest.mark.slow
async def test_speech_resuming_after_its_end_is_transcribed_again_with_the_later_words(
    local_server: WyomingOpenAIServer,
) -> None:
    assert local_server.port is not None
    runner = runner_of(local_server)
    first, second = halves(TEXT)
    async with Utterance(local_server.port) as utterance:
        before = runner.runs
        await utterance.send(room_noise(0.2) + spoken(first) + room_noise(0.6, seed=3))
        await eventually(lambda: runner.runs == before + 1, WAIT)  # the first half's guess
        await utterance.send(spoken(second))  # speech goes on up to audio-stop
        transcript = await utterance.stop()
    assert same_words(transcript, TEXT), transcript
    assert runner.runs == before + 2


@pytest.mark.slow
async def test_speech_ending_again_is_transcribed_before_audio_stop(
    local_server: WyomingOpenAIServer,
) -> None:
    assert local_server.port is not None
    runner = runner_of(local_server)
    first, second = halves(TEXT)
    async with Utterance(local_server.port) as utterance:
        before = runner.runs
        await utterance.send(room_noise(0.2) + spoken(first) + room_noise(0.6, seed=3))
        await eventually(lambda: runner.runs == before + 1, WAIT)
        await utterance.send(spoken(second) + room_noise(0.7, seed=4))
        await eventually(lambda: runner.runs == before + 2, WAIT)  # the whole, before stop
        transcript = await utterance.stop()
    assert same_words(transcript, TEXT), transcript
    assert runner.runs == before + 2


@pytest.mark.slow
async def test_past_the_speculation_limit_a_stale_guess_is_dropped(
    local_server: WyomingOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Speech resumes after a guess and ends past ``SPECULATE_MAX_MS``: no new guess, and
    the old one (without the later words) is not the answer."""
    assert local_server.port is not None
    runner = runner_of(local_server)
    first, second = halves(TEXT)
    head = room_noise(0.2) + spoken(first) + room_noise(0.6, seed=3)
    monkeypatch.setattr(local_whisper, "SPECULATE_MAX_MS", len(head) / 32 + 500)
    async with Utterance(local_server.port) as utterance:
        before = runner.runs
        await utterance.send(head)
        await eventually(lambda: runner.runs == before + 1, WAIT)
        await utterance.send(spoken(second) + room_noise(0.7, seed=4))
        transcript = await utterance.stop()
    assert same_words(transcript, TEXT), transcript
    assert runner.runs == before + 2  # the guess, then the whole at audio-stop


@pytest.mark.slow
async def test_without_speculation_whisper_runs_only_at_audio_stop() -> None:
    settings = load_settings(
        ["--uri", "tcp://127.0.0.1:0", "--no-zeroconf", "--no-web"],
        {"WYOMING_OPENAI_STT_SPECULATIVE_COMMIT": "false"},
    )
    async with running_server(settings) as server:
        assert server.port is not None
        runner = runner_of(server)
        before = runner.runs
        result = await ha_transcribe(server.port, command(TEXT))
    assert result.transcript is not None and same_words(result.transcript, TEXT)
    assert runner.runs == before + 1


@pytest.mark.slow
async def test_utterances_transcribed_locally_during_an_outage_are_speculative() -> None:
    """OpenAI refuses: the first utterance falls back; the next ones go to the local engine
    (24 kHz audio from the fallback wrapper) and Whisper runs before ``audio-stop``."""
    async with FakeOpenAI(api_key=API_KEY, reject_connections=True) as fake:
        settings = make_settings(fake.base_url, "--fallback", "local", "--openai-max-retries", "0")
        async with running_server(settings) as server:
            assert server.port is not None
            runner = runner_of(server)
            first = await ha_transcribe(server.port, command(TEXT))
            assert first.transcript is not None and same_words(first.transcript, TEXT)
            async with Utterance(server.port) as utterance:
                before = runner.runs
                await utterance.send(command(TEXT, seed=5))
                await eventually(lambda: runner.runs == before + 1, WAIT)
                transcript = await utterance.stop()
            assert same_words(transcript, TEXT)
            assert runner.runs == before + 1


# ------------------------------------------------------------------ Piper


def test_a_long_first_sentence_is_cut_after_its_first_clause() -> None:
    assert first_clause("The garage door is open, and the porch light is on. Close it?", 3) == (
        "The garage door is open,",
        "and the porch light is on. Close it?",
    )
    assert first_clause("The door is open; the porch light is on", 3) == (
        "The door is open;",
        "the porch light is on",
    )
    assert first_clause("Yes, the door is open.", 3) is None  # clause too short
    assert first_clause("The garage door is open, sir.", 3) is None  # rest too short
    assert first_clause("It costs 1,000 euros in total.", 1) is None  # no space: not a clause
    assert first_clause("Done. The garage door is open, and the light is on.", 1) is None
    assert first_clause("The garage door is open, and", 1) == ("The garage door is open,", "and")


@pytest.mark.slow
async def test_piper_speaks_once_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(piper_tts, "_RUNNERS", {})  # a process that never loaded the voice
    async with running_server(local_settings()) as server:
        tts = server.engines.tts
        assert isinstance(tts, PiperTtsEngine)
        assert tts.runner.warm
        assert tts.runner.syntheses == 1  # the warm-up, before any request
    async with running_server(local_settings()) as again:  # the process's voice is warm already
        assert again.engines.tts.runner is tts.runner  # type: ignore[attr-defined]
        assert tts.runner.syntheses == 1


@pytest.mark.slow
async def test_a_reply_spoken_clause_first_has_every_word(
    local_server: WyomingOpenAIServer,
) -> None:
    assert local_server.port is not None
    text = "The garage door is open, and the porch light is still on."
    result = await ha_synthesize(local_server.port, text)
    assert result.error is None
    assert result.types.count("audio-chunk") >= 2  # the clause, then the rest
    heard = await asyncio.to_thread(speech.transcribe_speech, result.audio, 22050)
    assert same_words(heard, text), heard


@pytest.mark.slow
async def test_a_streamed_reply_is_heard_from_its_first_clause_on(
    local_server: WyomingOpenAIServer,
) -> None:
    """Words arrive as an LLM streams them; audio comes before the first sentence ends."""
    assert local_server.port is not None
    text = "The garage door is open, and the porch light is still on. Shall I close it?"
    words = text.split(" ")
    clause_done = words.index("open,") + 2  # the clause is known once the next word begins
    audio = bytearray()
    async with AsyncTcpClient("127.0.0.1", local_server.port) as client:
        await client.write_event(SynthesizeStart().event())
        for index, word in enumerate(words[:clause_done]):
            await client.write_event(
                SynthesizeChunk(text=word if index == 0 else " " + word).event()
            )
        first = await asyncio.wait_for(client.read_event(), WAIT)
        assert first is not None and first.type == "audio-start"
        chunk = await asyncio.wait_for(client.read_event(), WAIT)
        assert chunk is not None and chunk.type == "audio-chunk"  # the sentence is unfinished
        audio += chunk.payload or b""
        for word in words[clause_done:]:
            await client.write_event(SynthesizeChunk(text=" " + word).event())
        await client.write_event(Synthesize(text=text).event())
        await client.write_event(SynthesizeStop().event())
        while (event := await asyncio.wait_for(client.read_event(), WAIT)) is not None:
            assert event.type != "error", event
            if event.type == "audio-chunk":
                audio += event.payload or b""
            if event.type == "synthesize-stopped":
                break
    heard = await asyncio.to_thread(speech.transcribe_speech, bytes(audio), 22050)
    assert same_words(heard, text), heard
