"""Piper's first audio for a first sentence without a clause: it is cut at a word boundary
(``sentences.first_phrase``), the phrase is spoken while the rest is made, and the join
sounds like one sentence (no long silence, no jump in the waveform).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import (
    API_KEY,
    fallback_settings,
    ha_synthesize,
    ha_synthesize_stream,
    local_settings,
    running_server,
)
from tests.utterances import eventually
from wyoming_openai.audio import AudioFormat
from wyoming_openai.server import WyomingOpenAIServer
from wyoming_openai.synthesis import Synthesis
from wyoming_openai.tts import piper_tts
from wyoming_openai.tts.base import SpeechOptions, TtsEngine, VoiceInfo
from wyoming_openai.tts.fallback import FallbackTtsEngine
from wyoming_openai.tts.sentences import SentenceSplitter, first_phrase

SENTENCE = "The front door is locked and the alarm is on."
"""A first sentence with no clause mark (10 words)."""
PHRASE = "The front door is locked"
RATE = 22050
WORD_GAP_MS = 120
"""Longest silence between two words of one sentence: Piper leaves up to about 100 ms
inside a sentence spoken whole (about 300 ms at a comma)."""
WAIT = 30.0
"""Longest an answer is waited for (a hang guard, not a timing assertion)."""


def same_words(heard: str, said: str) -> bool:
    return speech.normalize_text(heard) == speech.normalize_text(said)


def longest_quiet_ms(pcm: bytes, rate: int) -> float:
    """Longest stretch of 5 ms windows below Piper's silence level between the first and
    the last sound of ``pcm`` (16-bit mono), in milliseconds."""
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    window = rate // 200
    peaks = samples[: len(samples) // window * window].reshape(-1, window).max(axis=1)
    loud = np.flatnonzero(peaks >= piper_tts.SILENCE_LEVEL)
    longest = run = 0
    for quiet in peaks[loud[0] : loud[-1]] < piper_tts.SILENCE_LEVEL:
        run = run + 1 if quiet else 0
        longest = max(longest, run)
    return 1000 * longest * window / rate


# ------------------------------------------------------------------ where a sentence is cut


def test_a_sentence_without_a_clause_is_cut_before_a_conjunction_or_preposition() -> None:
    assert first_phrase(SENTENCE + " Good night.", 3, "en_US") == (
        PHRASE,
        "and the alarm is on. Good night.",
    )
    assert first_phrase("Turn on all the lights in the kitchen please.", 3, "en_GB") == (
        "Turn on all the lights",
        "in the kitchen please.",
    )
    # No phrase start within the first words, or a language without a list: after 6 words.
    assert first_phrase("I have really turned off every single light now.", 3, "en_US") == (
        "I have really turned off every",
        "single light now.",
    )
    german = "Die Haustür ist jetzt abgeschlossen und die Alarmanlage ist an."
    assert first_phrase(german, 3, "de_DE") == (
        "Die Haustür ist jetzt abgeschlossen und",
        "die Alarmanlage ist an.",
    )


def test_a_clause_is_still_the_first_choice_and_short_sentences_stay_whole() -> None:
    assert first_phrase("The garage door is open, and the porch light is on.", 3, "en_US") == (
        "The garage door is open,",
        "and the porch light is on.",
    )
    assert first_phrase("Turn on the lights in the hall.", 3, "en_US") is None  # 7 words
    assert first_phrase("Done. " + SENTENCE, 3, "en_US") is None  # the first sentence is short
    # A short first clause is no cut, but the sentence may still be cut at a word.
    assert first_phrase("Yes, " + SENTENCE[0].lower() + SENTENCE[1:], 3, "en_US") == (
        "Yes, the front door is locked",
        "and the alarm is on.",
    )


def test_every_word_is_kept_once_by_the_cut() -> None:
    for text in (SENTENCE, "What is the weather like tomorrow in Paris and in Rome?"):
        cut = first_phrase(text, 3, "en_US")
        assert cut is not None
        assert f"{cut[0]} {cut[1]}" == text


def test_a_streamed_sentence_gives_its_first_phrase_once_two_words_follow_it() -> None:
    splitter = SentenceSplitter(4096)
    words = SENTENCE.split(" ")
    found = []
    for index, word in enumerate(words):
        splitter.add(word if index == 0 else " " + word)
        found.append(splitter.pending_phrase("en_US"))
    assert found.index(PHRASE) == words.index("alarm")  # 8 words known, 2 after the cut
    assert all(phrase is None for phrase in found[: words.index("alarm")])
    assert splitter.drop_prefix(PHRASE)
    assert splitter.finish() == ["and the alarm is on."]


def test_a_partial_word_is_never_the_end_of_a_streamed_phrase() -> None:
    splitter = SentenceSplitter(4096)
    splitter.add("I have really turned off every sing")  # "sing" may go on ("single")
    assert splitter.pending_phrase("en_US") is None
    splitter.add("le light")
    assert splitter.pending_phrase("en_US") == "I have really turned off every"


def test_a_streamed_phrase_with_markdown_emphasis_waits_for_its_sentence() -> None:
    splitter = SentenceSplitter(4096)
    splitter.add("The **front door** is locked and the alarm is")
    assert splitter.pending_phrase("en_US") is None


class Recorder(TtsEngine):
    """A phrase-cutting engine that records the pieces it is given."""

    output_format = AudioFormat(RATE, 2, 1)
    max_text_chars = 4096
    clause_first = True
    phrase_language = "en_US"

    def __init__(self) -> None:
        self.pieces: list[str] = []

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("v", "v", ("en_US",))]

    def default_voice(self) -> str:
        return "v"

    async def synthesize(
        self, text: str, voice: str, options: SpeechOptions | None = None
    ) -> AsyncIterator[bytes]:
        self.pieces.append(text)
        yield bytes(200)


async def pieces_of(chunks: list[str]) -> list[str]:
    """The pieces a streamed reply of ``chunks`` is synthesized in."""

    async def write(event: Event) -> None:
        del event

    engine = Recorder()
    synthesis = Synthesis(engine, "v", 2, write, streaming=True)
    for chunk in chunks:
        synthesis.add_text(chunk)
    synthesis.finish()
    await eventually(lambda: synthesis.done, WAIT)
    await synthesis.aclose()
    return engine.pieces


async def test_only_the_reply_s_first_sentence_is_cut() -> None:
    second = "The back door is open and the garage light is off."
    assert await pieces_of([SENTENCE, " " + second]) == [PHRASE, "and the alarm is on.", second]
    # A short first sentence started early is the first piece: the next one stays whole.
    assert await pieces_of(["Good evening.", " " + SENTENCE]) == ["Good evening.", SENTENCE]


# ------------------------------------------------------------------ the join


def test_the_silence_after_a_phrase_cut_mid_sentence_is_cut_to_a_word_gap() -> None:
    tone = (8000 * np.sin(np.arange(RATE // 2) / 5)).astype("<i2").tobytes()
    trimmed = piper_tts.trim_tail(tone + bytes(2 * (RATE // 2)), RATE)
    assert len(trimmed) == len(tone) + 2 * RATE * piper_tts.JOIN_GAP_MS // 1000
    assert trimmed[-2:] == b"\x00\x00"  # faded to zero: no click at the join
    assert trimmed[: len(tone) // 2] == tone[: len(tone) // 2]
    short = tone + bytes(2 * (RATE // 100))  # 10 ms of silence: kept as it is
    assert piper_tts.trim_tail(short, RATE) == short


def test_each_sentence_s_audio_leaves_as_soon_as_it_is_made() -> None:
    """Only a text ending mid-sentence waits for its last chunk (to trim it)."""
    made: list[str] = []

    class Chunk:
        def __init__(self, name: str) -> None:
            self.audio_int16_bytes = name.encode()

    def chunks(names: list[str]) -> Iterator[Chunk]:
        for name in names:
            made.append(name)
            yield Chunk(name)

    audio = piper_tts._spoken(chunks(["a0", "b0"]), "One. Two.", RATE)  # type: ignore[arg-type]
    assert next(audio) == b"a0" and made == ["a0"]


@pytest.fixture
async def local_server() -> AsyncIterator[WyomingOpenAIServer]:
    async with running_server(local_settings()) as server:
        yield server


async def read_until(client: AsyncTcpClient, kind: str) -> list[Event]:
    events = []
    while (event := await asyncio.wait_for(client.read_event(), WAIT)) is not None:
        assert event.type != "error", event
        events.append(event)
        if event.type == kind:
            return events
    raise AssertionError("connection closed")


async def stream_until_phrase_heard(port: int, text: str) -> bytes:
    """Stream ``text`` word by word; after the word that completes the first phrase's
    context (two words after it), wait for audio before sending the rest. Returns all
    the audio; fails if no audio comes before the sentence is complete."""
    words = text.split(" ")
    known = words.index("alarm") + 1
    audio = bytearray()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(SynthesizeStart().event())
        for index, word in enumerate(words[:known]):
            await client.write_event(
                SynthesizeChunk(text=word if index == 0 else " " + word).event()
            )
        first = await read_until(client, "audio-chunk")  # the sentence is still unfinished
        audio += first[-1].payload or b""
        for word in words[known:]:
            await client.write_event(SynthesizeChunk(text=" " + word).event())
        await client.write_event(Synthesize(text=text).event())
        await client.write_event(SynthesizeStop().event())
        for event in await read_until(client, "synthesize-stopped"):
            if event.type == "audio-chunk":
                audio += event.payload or b""
    return bytes(audio)


@pytest.mark.slow
async def test_a_streamed_first_sentence_without_a_clause_is_heard_before_it_ends(
    local_server: WyomingOpenAIServer,
) -> None:
    assert local_server.port is not None
    audio = await stream_until_phrase_heard(local_server.port, SENTENCE)
    heard = await asyncio.to_thread(speech.transcribe_speech, audio, RATE)
    assert same_words(heard, SENTENCE), heard


@pytest.mark.slow
async def test_the_join_is_no_longer_than_piper_s_own_word_gaps(
    local_server: WyomingOpenAIServer,
) -> None:
    """Plain ``synthesize``: the phrase comes as its own chunk, ending at zero; no silence
    in the reply is longer than a gap between two words (a cut before its silence was
    trimmed left about 290 ms, a comma's pause)."""
    assert local_server.port is not None
    result = await ha_synthesize(local_server.port, SENTENCE)
    assert result.error is None
    chunks = [event.payload or b"" for event in result.events if event.type == "audio-chunk"]
    assert len(chunks) == 2  # the phrase, then the rest
    heard = await asyncio.to_thread(speech.transcribe_speech, chunks[0], RATE)
    assert same_words(heard, PHRASE), heard
    assert chunks[0][-2:] == b"\x00\x00"
    assert abs(int.from_bytes(chunks[1][:2], "little", signed=True)) < piper_tts.SILENCE_LEVEL
    assert longest_quiet_ms(result.audio, RATE) <= WORD_GAP_MS
    heard = await asyncio.to_thread(speech.transcribe_speech, result.audio, RATE)
    assert same_words(heard, SENTENCE), heard


@pytest.mark.slow
async def test_piper_standing_in_for_openai_cuts_the_first_phrase_too() -> None:
    """OpenAI refuses: the first reply trips the hold; the next reply, spoken by Piper
    while it stands in, is heard before its first sentence ends."""
    async with FakeOpenAI(api_key=API_KEY, reject_connections=True) as fake:
        settings = fallback_settings(fake)
        async with running_server(settings) as server:
            assert server.port is not None
            tts = server.engines.tts
            assert isinstance(tts, FallbackTtsEngine)
            assert not tts.clause_first  # OpenAI serves: its sentences stay whole
            first = await ha_synthesize_stream(server.port, ["Good evening."])
            assert first.error is None and first.audio
            assert tts.standing_in and tts.clause_first
            audio = await stream_until_phrase_heard(server.port, SENTENCE)
    heard = await asyncio.to_thread(speech.transcribe_speech, audio, 24000)
    assert same_words(heard, SENTENCE), heard
