"""Bench rows for warm realtime speech (issue 18) and the pools' health (issue 14 item 2).

Called by ``benchmarks/latency.py`` (skip key ``warm``); each row starts its own server
process (``python -m wyoming_openai`` from ``--server-root``) against the shared fake:

- realtime speech, first reply after start-up: request (plain ``synthesize``) -> first
  ``audio-chunk``, and the bridge's share of it (that time minus the fake's own, from
  receiving ``conversation.item.create`` to sending its first ``response.output_audio.delta``;
  what is left is the server, both loopback hops and the client), one server start per
  run, the request sent once the fake has configured the server's first session;
- the same for a reply after the session limit (the fake's ``expires_at`` 2 s ahead, so
  sessions are renewed about every 1.5 s: each run waits for a renewal first);
- a second voice's first reply (cold: no session of that voice was open) and its next one;
- OpenAI unreachable from start-up (every connection refused, or accepted and never
  answered: the default 5 s connect timeout), with ``fallback: local``: the next command's
  ``audio-stop`` -> ``transcript`` once the pool has failed to connect (the local engines
  answer; HA-realistic audio with 0.7 s of room noise at the end).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.fake_openai import FakeOpenAI, RealtimeSessionRecord
from tests.utterances import COMMANDS, command
from wyoming_openai.catalogue import REALTIME_VOICES

TEXT = "The kitchen lights are off."
REALTIME = ["--tts-mode", "realtime"]


def _speech_sessions(fake: FakeOpenAI) -> list[RealtimeSessionRecord]:
    return [s for s in fake.realtime_sessions if "model" in s.query]


def _fake_time(fake: FakeOpenAI, after: float) -> tuple[RealtimeSessionRecord, float] | None:
    """The session that answered a request sent at ``after``, and the fake's own seconds
    from receiving its ``conversation.item.create`` to sending its first audio delta."""
    for session in _speech_sessions(fake):
        received = next(
            (
                at
                for event, at in zip(
                    session.client_events, session.client_event_times, strict=False
                )
                if at >= after and event.get("type") == "conversation.item.create"
            ),
            None,
        )
        if received is None:
            continue
        for event, at in zip(session.server_events, session.server_event_times, strict=False):
            if at >= received and event["type"] == "response.output_audio.delta":
                return session, at - received
    return None


async def _until(predicate: Any, seconds: float = 30.0) -> bool:
    """Whether ``predicate()`` came true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def _warm_session(fake: FakeOpenAI, before: int) -> None:
    """Until the server's first speech session (index ``before``) is configured; a server
    that opens none ahead (an older checkout) is given 3 s, then measured cold."""
    if await _until(lambda: len(_speech_sessions(fake)) > before, 3.0):
        await _until(lambda: _configured(_speech_sessions(fake)[before]))
        await asyncio.sleep(0.05)  # the server has read session.updated


def _configured(session: RealtimeSessionRecord) -> bool:
    return bool(session.events_of_type("session.updated"))


async def _reply(fake: FakeOpenAI, port: int, voice: str | None = None) -> tuple[float, float]:
    """Milliseconds request -> first audio, and the bridge's share of it."""
    from wyoming.audio import AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize, SynthesizeVoice

    from benchmarks.latency import TtsRun, read_tts

    run = TtsRun()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        run.started_at = time.monotonic()
        chosen = SynthesizeVoice(name=voice) if voice else None
        await client.write_event(Synthesize(text=TEXT, voice=chosen).event())
        await read_tts(client, run, AudioStop().event().type)
    assert run.first_audio_at is not None
    total = run.first_audio_at - run.started_at
    found = _fake_time(fake, run.started_at)
    own = found[1] if found is not None else float("nan")
    return total * 1000, (total - own) * 1000


async def _settled(fake: FakeOpenAI) -> None:
    """Until every speech session's last response is cleaned up (items deleted)."""
    await _until(
        lambda: all(len(s.deleted_items) >= 2 * len(s.spoken) for s in _speech_sessions(fake))
    )
    await asyncio.sleep(0.05)  # the server has read the deletions: the session is ready


async def section(table: Any, fake: FakeOpenAI, server_root: str, runs: int) -> None:
    """Add the warm-speech and health rows to ``table`` (``benchmarks.latency.Table``)."""
    from benchmarks.latency import ServerProcess

    async def server(args: list[str]) -> ServerProcess:
        process = ServerProcess(Path(server_root), fake.base_url, args, {})
        await process.wait_ready()
        return process

    saved = fake.tts_first_byte_delay, fake.tts_chunk_interval, fake.tts_chunk_bytes
    # Deltas at the pace of real time (0.1 s of audio every 0.1 s): a burst of them would
    # hold up this process's client, which shares the event loop with the fake.
    fake.tts_first_byte_delay, fake.tts_chunk_interval = 0.0, 0.1
    try:
        totals, shares = [], []
        for _ in range(max(3, runs // 4)):
            before = len(_speech_sessions(fake))
            process = await server(REALTIME)
            try:
                await _warm_session(fake, before)
                total, share = await _reply(fake, process.port)
            finally:
                await process.stop()
            totals.append(total)
            shares.append(share)
        table.add("warm: realtime speech, first reply after start-up -> first audio", totals)
        table.add("  bridge's own share", shares)

        fake.session_expires_in = 2.0
        process = await server(REALTIME)
        try:
            totals, shares = [], []
            for _ in range(max(3, runs // 4)):
                await _settled(fake)
                await _warm_session(fake, len(_speech_sessions(fake)))  # renewed
                total, share = await _reply(fake, process.port)
                totals.append(total)
                shares.append(share)
        finally:
            fake.session_expires_in = None
            await process.stop()
        table.add("warm: realtime speech after the session limit (renewed) -> first audio", totals)
        table.add("  bridge's own share", shares)

        before = len(_speech_sessions(fake))
        process = await server(REALTIME)
        try:
            await _warm_session(fake, before)
            cold, warm = [], []
            voices = [v for v in REALTIME_VOICES if v != "alloy"]
            for voice in voices[: max(3, min(len(voices), runs // 2))]:
                cold.append((await _reply(fake, process.port, voice))[1])
                await _settled(fake)
                warm.append((await _reply(fake, process.port, voice))[1])
                await _settled(fake)
        finally:
            await process.stop()
        table.add("warm: a second voice's first reply (cold), bridge share", cold)
        table.add("warm: that voice's next reply, bridge share", warm)
    finally:
        fake.tts_first_byte_delay, fake.tts_chunk_interval, fake.tts_chunk_bytes = saved

    await _outage_row(table, fake, server, runs, hang=False)
    await _outage_row(table, fake, server, runs, hang=True)


async def _outage_row(table: Any, fake: FakeOpenAI, server: Any, runs: int, hang: bool) -> None:
    """OpenAI refusing every connection (503), or accepting them and never answering (a
    default 5 s connect timeout), from start-up: the next commands, once the pool has
    failed."""
    from benchmarks.latency import ha_transcribe

    args = ["--fallback", "local", "--stt-warm-sessions", "1"]
    waits = []
    before = fake.rejected_requests, len(fake.realtime_sessions)
    fake.hang, fake.reject_connections = hang, not hang
    try:
        process = await server(args)
        try:
            if hang:  # the pool connected, and gives up after the connect timeout
                await _until(lambda: len(fake.realtime_sessions) > before[1], 10)
                await asyncio.sleep(5.5)
            else:
                await _until(lambda: fake.rejected_requests > before[0], 10)
                await asyncio.sleep(0.2)
            for index in range(max(3, runs // 4)):
                pcm = command(COMMANDS[index % len(COMMANDS)], seed=index)
                run = await ha_transcribe(process.port, pcm)
                waits.append((run.transcript_at - run.audio_stop_at) * 1000)
        finally:
            await process.stop()
    finally:
        fake.hang = fake.reject_connections = False
    kind = "hangs" if hang else "refuses"
    table.add(f"OpenAI {kind}, seen by the pool: next command audio-stop -> transcript", waits)
    table.one("  the first command of the outage", waits[0], "ms")
