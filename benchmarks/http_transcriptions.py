"""Rows of ``POST /v1/audio/transcriptions`` for ``benchmarks/latency.py`` (skip key ``http``).

A 3 s WAV (16 kHz s16le mono: a spoken command from ``tests.utterances.COMMANDS`` in room
noise) is uploaded to the web face of a server process with the official SDK's wire shape
(multipart, ``model``, ``response_format: json``); the upstream is the fake's realtime
transcription session, finalizing 150 ms after a commit. Rows (median and p95 over the
runs, milliseconds):

- request -> response, as the client sees it;
- the bridge's share of it: the time outside the fake, i.e. from the request to the last
  commit the fake received (upload, decoding, resampling, appending) plus from the fake's
  last ``...completed`` (or that commit, if later) to the response at the client;
- the fake's own time, last commit -> last ``...completed``, for reference.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import aiohttp

from tests.fake_openai import FakeOpenAI, RealtimeSessionRecord
from tests.utterances import COMMANDS, RATE, command, room_noise
from wyoming_openai.audio import PCM_16K_MONO, pcm_to_wav

if TYPE_CHECKING:
    from benchmarks.latency import ServerProcess, Table

UPLOAD_SECONDS = 3.0
FINALIZE_DELAY = 0.15  # s


def upload_wav(index: int) -> bytes:
    """A 3 s WAV: command ``index`` with room noise up to :data:`UPLOAD_SECONDS`."""
    pcm = command(COMMANDS[index % len(COMMANDS)], seed=index)
    size = int(UPLOAD_SECONDS * RATE) * 2
    pcm = (pcm + room_noise(UPLOAD_SECONDS, seed=index + 7))[:size]
    return pcm_to_wav(pcm, PCM_16K_MONO)


def _session_after(fake: FakeOpenAI, started: float) -> RealtimeSessionRecord | None:
    for session in reversed(fake.realtime_sessions):
        if session.commits and session.first_audio_at and session.first_audio_at >= started:
            return session
    return None


async def http_section(table: Table, fake: FakeOpenAI, server: ServerProcess, runs: int) -> None:
    """The rows of this module ("-" for a server without the endpoint)."""
    labels = (
        "http: 3 s WAV upload -> transcription (fake finalize 150 ms)",
        "  bridge share (outside the fake)",
        "  fake: last commit -> completed",
    )
    if server.web_port is None:
        for label in labels:
            table.add(label, [])
        return
    fake.finalize_delay = FINALIZE_DELAY
    await asyncio.sleep(1.0)  # warm session opened, start-up settled
    url = f"http://127.0.0.1:{server.web_port}/v1/audio/transcriptions"
    totals, shares, upstream = [], [], []
    files = [upload_wav(index) for index in range(runs)]
    async with aiohttp.ClientSession() as http:
        for file in files:
            form = aiohttp.FormData()
            form.add_field("file", file, filename="command.wav", content_type="audio/wav")
            form.add_field("model", "gpt-4o-transcribe")
            started = time.monotonic()
            async with http.post(url, data=form) as response:
                await response.read()
                ended = time.monotonic()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
            session = _session_after(fake, started)
            if session is not None and session.completed_times:
                commit, done = session.commit_times[-1], session.completed_times[-1]
                totals.append((ended - started) * 1000)
                shares.append(((commit - started) + (ended - max(commit, done))) * 1000)
                upstream.append(max(0.0, done - commit) * 1000)
            await asyncio.sleep(0.1)  # the warm session is replaced
    for label, values in zip(labels, (totals, shares, upstream), strict=True):
        table.add(label, values)
