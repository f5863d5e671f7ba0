"""Streamed synthesis starts a sentence as soon as a text chunk completes it, and takes it
back correctly when the next chunk turns out to continue it (real server, fake OpenAI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.fake_openai import FakeOpenAI, default_synthesizer
from tests.harness import TtsResult, _read_tts
from tests.utterances import eventually


def spoken(*sentences: str) -> bytes:
    """What the fake says for these sentences, one request each, in order."""
    return b"".join(default_synthesizer(sentence, "alloy") for sentence in sentences)


@contextlib.asynccontextmanager
async def stream(port: int) -> AsyncIterator[tuple[AsyncTcpClient, TtsResult, asyncio.Task[None]]]:
    """A streamed synthesis in Home Assistant's order; the caller sends the chunks and
    ``synthesize-stop``, then awaits the reader (until ``synthesize-stopped``)."""
    result = TtsResult()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        reader = asyncio.create_task(_read_tts(client, result, "synthesize-stopped"))
        try:
            await client.write_event(SynthesizeStart().event())
            yield client, result, reader
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader


async def requested(fake: FakeOpenAI, text: str) -> None:
    """Wait until the fake has a speech request for ``text``."""
    await eventually(lambda: any(r.get("input") == text for r in fake.speech_requests))


def withdrawn(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The server's debug lines for sentences started early and then withdrawn: logged
    when the next chunk arrives, whether or not the early request had left by then."""
    return [r.getMessage() for r in caplog.records if "started early" in r.getMessage()]


async def test_a_chunk_ending_a_sentence_starts_it_without_waiting_for_more_text(
    fake: FakeOpenAI, port: int
) -> None:
    async with stream(port) as (client, result, reader):
        await client.write_event(SynthesizeChunk(text="The front door is locked.").event())
        await requested(fake, "The front door is locked.")  # before any more text came
        await client.write_event(SynthesizeChunk(text=" The lights are off.").event())
        await client.write_event(SynthesizeStop().event())
        await asyncio.wait_for(reader, 10)
    assert result.audio == spoken("The front door is locked.", "The lights are off.")
    assert [r["input"] for r in fake.speech_requests] == [
        "The front door is locked.",
        "The lights are off.",
    ]


async def test_a_sentence_started_early_is_withdrawn_when_the_text_goes_on(
    fake: FakeOpenAI, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """ "It is 3." looks finished until "5 degrees" follows: the early request is cancelled
    before any of its audio plays, and the whole sentence is spoken once."""
    caplog.set_level(logging.DEBUG, logger="wyoming_openai")
    fake.speech_hold = asyncio.Event()  # no audio until the text has gone on
    async with stream(port) as (client, result, reader):
        await client.write_event(SynthesizeChunk(text="It is 3.").event())
        await requested(fake, "It is 3.")
        await client.write_event(SynthesizeChunk(text="5 degrees outside.").event())
        await requested(fake, "It is 3.5 degrees outside.")
        fake.speech_hold.set()
        await client.write_event(SynthesizeStop().event())
        await asyncio.wait_for(reader, 10)
    assert result.audio == spoken("It is 3.5 degrees outside.")
    assert result.types[-1] == "synthesize-stopped"
    assert [r["input"] for r in fake.speech_requests] == ["It is 3.", "It is 3.5 degrees outside."]
    assert not any(s.completed for s in fake.speech_streams if s.request["input"] == "It is 3.")
    (line,) = withdrawn(caplog)  # the log the test of abbreviations relies on
    assert "'It is 3.'" in line


async def test_a_sentence_already_playing_is_followed_by_the_rest_of_the_text(
    fake: FakeOpenAI, port: int
) -> None:
    """The early sentence is already being heard when the text goes on: nothing is said
    twice, nothing is lost."""
    async with stream(port) as (client, result, reader):
        await client.write_event(SynthesizeChunk(text="It is 3.").event())
        await eventually(lambda: result.first_audio_at is not None)
        await client.write_event(SynthesizeChunk(text="5 degrees outside.").event())
        await client.write_event(SynthesizeStop().event())
        await asyncio.wait_for(reader, 10)
    assert result.audio == spoken("It is 3.", "5 degrees outside.")


async def test_abbreviations_and_unfinished_text_are_not_started_early(
    fake: FakeOpenAI, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither "Call Dr." nor "Call Dr. Smith" is started early. Such a start would be
    withdrawn by the next chunk, maybe before its request reached the fake; the server's
    log of the withdrawal shows it whatever the timing."""
    caplog.set_level(logging.DEBUG, logger="wyoming_openai")
    async with stream(port) as (client, result, reader):
        for chunk in ("Call Dr.", " Smith", " now. Then"):
            await client.write_event(SynthesizeChunk(text=chunk).event())
        await requested(fake, "Call Dr. Smith now.")  # confirmed by "Then"
        await client.write_event(SynthesizeChunk(text=" rest.").event())
        await client.write_event(SynthesizeStop().event())
        await asyncio.wait_for(reader, 10)
    # In this order: "Then rest." could only be asked for once the test sent " rest.".
    assert [r["input"] for r in fake.speech_requests] == ["Call Dr. Smith now.", "Then rest."]
    assert withdrawn(caplog) == []
    assert result.audio == spoken("Call Dr. Smith now.", "Then rest.")


async def test_every_complete_sentence_is_requested_at_once(fake: FakeOpenAI, port: int) -> None:
    """A reply of four sentences in one chunk: all four requests are under way while the
    fake has not sent a byte of the first one's audio."""
    fake.speech_hold = asyncio.Event()
    sentences = ["One two three.", "Four five six.", "Seven eight.", "Nine ten."]
    async with stream(port) as (client, result, reader):
        await client.write_event(SynthesizeChunk(text=" ".join(sentences)).event())
        for sentence in sentences:
            await requested(fake, sentence)  # hangs (and fails) if one waited for audio
        assert all(s.first_byte_at is None for s in fake.speech_streams)
        fake.speech_hold.set()
        await client.write_event(SynthesizeStop().event())
        await asyncio.wait_for(reader, 20)
    assert result.audio == spoken(*sentences)
