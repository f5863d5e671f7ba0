"""Load: many clients at once each get their own right answer, and nothing leaks."""

from __future__ import annotations

import asyncio
import os
import random

import numpy as np
import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart
from wyoming.tts import SynthesizeChunk, SynthesizeStart

from tests.fake_openai import FakeOpenAI, default_synthesizer
from tests.harness import describe, ha_synthesize_stream, ha_transcribe
from tests.utterances import tone
from wyoming_openai.server import WyomingOpenAIServer

pytestmark = pytest.mark.slow  # load: thousands of connections


def tone_transcriber(pcm: bytes, language: str | None, prompt: str | None) -> str:
    """Names the dominant frequency of 24 kHz audio, to the nearest 10 Hz: each client
    sends its own tone, so a transcript that went to the wrong client is caught."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    hz = np.argmax(spectrum) * 24000 / len(samples)
    return f"tone {round(hz / 10) * 10}"


def live_tasks() -> int:
    """Tasks of this loop, less the fake's aiohttp handlers of idle keep-alive HTTP
    connections (the SDK's connection pool keeps them open, on purpose)."""
    return sum("RequestHandler.start" not in repr(task.get_coro()) for task in asyncio.all_tasks())


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle(predicate, what: str, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``predicate()`` holds (resources are released asynchronously)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not predicate():
        if loop.time() > end:
            names = sorted(str(t.get_coro())[:60] for t in asyncio.all_tasks())
            raise AssertionError(f"{what} did not return to idle: {names}")
        await asyncio.sleep(0.05)


def handler_count(server: WyomingOpenAIServer) -> int:
    return server.connection_count


async def test_fifty_simultaneous_clients_each_get_their_own_result(
    fake: FakeOpenAI, server: WyomingOpenAIServer, port: int
) -> None:
    fake.transcriber = tone_transcriber
    await describe(port)
    idle_tasks = live_tasks()
    freqs = [300 + 40 * i for i in range(25)]
    texts = [f"Reply number {i}. It has two sentences." for i in range(25)]

    stt = [ha_transcribe(port, tone(f, 1.0, 16000), realtime=True) for f in freqs]
    tts = [ha_synthesize_stream(port, [text[:9], text[9:]]) for text in texts]
    results = await asyncio.gather(*stt, *tts)

    for freq, result in zip(freqs, results[:25], strict=True):
        assert result.transcript == f"tone {freq}", (freq, result.types)
    for text, result in zip(texts, results[25:], strict=True):
        sentences = [s.strip() for s in text.replace(". ", ".|").split("|")]
        expected = b"".join(default_synthesizer(s, "alloy") for s in sentences)
        assert result.audio == expected
        assert result.types[-1] == "synthesize-stopped"

    await settle(lambda: live_tasks() <= idle_tasks, "task count")
    await settle(lambda: handler_count(server) == 0, "connections")
    for session in fake.realtime_sessions:
        await asyncio.wait_for(session.closed.wait(), 5)
    assert len(fake.realtime_sessions) == 25


async def abort_mid_request(port: int, rng: random.Random) -> None:
    """Start a transcription or a synthesis, then vanish without a goodbye."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if rng.random() < 0.7:
        events = [
            Transcribe(language="en").event(),
            AudioStart(rate=16000, width=2, channels=1).event(),
        ]
        chunk = tone(400, 0.01, 16000)
        events += [
            AudioChunk(rate=16000, width=2, channels=1, audio=chunk).event()
            for _ in range(rng.randint(0, 30))
        ]
    else:
        events = [SynthesizeStart().event(), SynthesizeChunk(text="Hello there. How").event()]
    from wyoming.event import async_write_event

    for event in events:
        await async_write_event(event, writer)
    if rng.random() < 0.5:
        writer.write(b'{"type": "audio-chunk", "payload_length": 640}\n' + b"\x00" * 100)
    await asyncio.sleep(rng.random() * 0.02)
    writer.transport.abort()
    del reader


async def test_a_thousand_aborted_connections_leave_nothing_behind(
    fake: FakeOpenAI, server: WyomingOpenAIServer, port: int
) -> None:
    await describe(port)
    await asyncio.sleep(0.1)
    idle_tasks = live_tasks()
    idle_fds = open_fds()
    rng = random.Random(7)
    for _ in range(20):
        await asyncio.gather(*(abort_mid_request(port, rng) for _ in range(50)))

    await settle(lambda: handler_count(server) == 0, "connections")
    await settle(lambda: live_tasks() <= idle_tasks, "task count")
    await settle(lambda: all(s.closed.is_set() for s in fake.realtime_sessions), "upstream")
    await settle(lambda: open_fds() <= idle_fds, "open file descriptors")
    # and it still works
    ok = await ha_transcribe(port, tone(300, 0.5, 16000))
    assert ok.transcript == "hello world"
