"""Rows of ``POST /v1/audio/speech`` (the web face's OpenAI-compatible speech), for
``benchmarks/latency.py`` (skip key ``http``).

- time to the first body byte of a streamed request (``stream_format: audio``) in ``pcm``
  and ``mp3``, as the client sees it, and the bridge's share of it: that time minus the
  fake's own, from receiving the upstream request to sending its first byte
  (``SpeechStreamRecord.first_byte_at - started_at``);
- the encoders' cost: milliseconds of one thread per second of audio for each
  ``response_format``, in 100 ms chunks, in this process (what decides whether a
  format is encoded off the event loop, ``web/encode.py``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np

from wyoming_openai.web.encode import CONTAINERS, SpeechEncoder

if TYPE_CHECKING:
    from benchmarks.latency import ServerProcess, Table
    from tests.fake_openai import FakeOpenAI

UPSTREAM_FIRST_BYTE = 0.1
"""Seconds the fake takes to its first speech byte during these rows."""

TEXTS = [
    "The front door is locked.",
    "The kitchen lights are off.",
    "It is twenty one degrees inside.",
    "Tomorrow will be sunny.",
]


async def first_byte(
    session: aiohttp.ClientSession, url: str, fake: FakeOpenAI, body: dict[str, Any]
) -> tuple[float, float]:
    """``(request -> first body byte, the bridge's share of it)`` in seconds; the body is
    read to its end."""
    before = len(fake.speech_streams)
    started = time.monotonic()
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        await response.content.readany()
        arrived = time.monotonic()
        await response.read()
    record = fake.speech_streams[before]
    assert record.first_byte_at is not None
    upstream = record.first_byte_at - record.started_at
    return arrived - started, arrived - started - upstream


def encode_cost(response_format: str, seconds: float = 5.0) -> float:
    """Milliseconds of encoding per second of 24 kHz speech-like audio (100 ms chunks)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(24000 * seconds)) / 24000
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    pcm = (wave * 32767).astype("<i2").tobytes()
    encoder = SpeechEncoder(response_format)
    started = time.perf_counter()
    for offset in range(0, len(pcm), 4800):
        encoder.encode(pcm[offset : offset + 4800])
    encoder.finish()
    return (time.perf_counter() - started) * 1000 / seconds


async def http_speech(table: Table, fake: FakeOpenAI, server: ServerProcess, runs: int) -> None:
    """The rows of this module ("-" for a server without a web face)."""
    formats = ("pcm", "mp3")
    if server.web_port is None:
        for response_format in formats:
            table.add(f"http speech ({response_format}): request -> first byte", [])
            table.add("  bridge share over the upstream's first byte", [])
    else:
        url = f"http://127.0.0.1:{server.web_port}/v1/audio/speech"
        delay, fake.tts_first_byte_delay = fake.tts_first_byte_delay, UPSTREAM_FIRST_BYTE
        try:
            async with aiohttp.ClientSession() as session:
                for response_format in formats:
                    waits, shares = [], []
                    for index in range(runs + 1):
                        body = {
                            "model": "gpt-4o-mini-tts",
                            "voice": "alloy",
                            "input": TEXTS[index % len(TEXTS)],
                            "response_format": response_format,
                        }
                        wait, share = await first_byte(session, url, fake, body)
                        if index:  # the first run warms the encoder up
                            waits.append(wait * 1000)
                            shares.append(share * 1000)
                    table.add(f"http speech ({response_format}): request -> first byte", waits)
                    table.add("  bridge share over the upstream's first byte", shares)
        finally:
            fake.tts_first_byte_delay = delay
    for response_format in CONTAINERS:
        encode_cost(response_format, 0.5)  # FFmpeg's libraries loaded, caches warm
        table.one(
            f"http speech: {response_format} encoding per second of audio",
            encode_cost(response_format),
            "ms/s",
        )
