"""No upstream session or file descriptor outlives its utterance, however it ends.

Each path is driven :data:`REPEATS` times over real TCP in Home Assistant's order
(``transcribe`` first, then audio; ``homeassistant/components/wyoming/stt.py``), each time
after the upstream session is open at the fake, so a path that forgot to release it would
leave one realtime WebSocket (and its descriptors) per run. The connections of the
rejected paths stay open while the sessions are counted: a rejected utterance releases its
session at once, not when the client leaves. Counts are awaited until they settle (a hang
guard, not a timing assertion).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from tests.fake_openai import FakeOpenAI
from tests.harness import chunks_of, ha_transcribe, make_settings, running_server
from tests.utterances import eventually, tone

REPEATS = 20
SETTLE_SECONDS = 20.0

PCM = tone(440, 0.3, 16000)


def open_fds() -> int:
    """File descriptors this process has open now (server, fake and clients alike)."""
    return len(os.listdir("/proc/self/fd"))


async def settled(count: Callable[[], int], target: int) -> None:
    """Wait until ``count()`` is at most ``target``; on a hang, fail with the count."""
    try:
        await eventually(lambda: count() <= target, SETTLE_SECONDS)
    except TimeoutError:
        pytest.fail(f"still {count()} open, expected at most {target}")


async def read_until(client: AsyncTcpClient, *types: str) -> Event:
    while True:
        event = await asyncio.wait_for(client.read_event(), 10)
        assert event is not None, "connection closed early"
        if event.type in types:
            return event


async def start(client: AsyncTcpClient, fake: FakeOpenAI, sessions_before: int) -> None:
    """``transcribe``, then wait until its upstream session is open at the fake."""
    await client.write_event(Transcribe(language="en").event())
    async with asyncio.timeout(10):
        await fake.wait_for_realtime_session(sessions_before + 1)


async def send_audio(client: AsyncTcpClient, pcm: bytes, rate: int = 16000) -> None:
    for chunk in chunks_of(pcm, rate, 2, 1):
        await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=chunk).event())


# Each path ends one utterance on a connection that stays open; returns the error code.
Path = Callable[[AsyncTcpClient, FakeOpenAI, int], Awaitable[str | None]]


async def rejected_start(client: AsyncTcpClient, fake: FakeOpenAI, before: int) -> str | None:
    await start(client, fake, before)
    await client.write_event(AudioStart(rate=0, width=2, channels=1).event())
    await send_audio(client, PCM)
    await client.write_event(AudioStop().event())
    return (await read_until(client, "error")).data["code"]


async def audio_without_start(client: AsyncTcpClient, fake: FakeOpenAI, before: int) -> str | None:
    await start(client, fake, before)
    await send_audio(client, PCM)
    await client.write_event(AudioStop().event())
    return (await read_until(client, "error")).data["code"]


async def bad_chunk_format(client: AsyncTcpClient, fake: FakeOpenAI, before: int) -> str | None:
    await start(client, fake, before)
    await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
    await send_audio(client, PCM[:3200])
    await client.write_event(AudioChunk(rate=0, width=2, channels=1, audio=PCM[:960]).event())
    await send_audio(client, PCM[3200:])
    await client.write_event(AudioStop().event())
    return (await read_until(client, "error")).data["code"]


async def too_long(client: AsyncTcpClient, fake: FakeOpenAI, before: int) -> str | None:
    await start(client, fake, before)
    await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
    await send_audio(client, tone(300, 1.2, 16000))  # the limit is 1 s here
    await client.write_event(AudioStop().event())
    return (await read_until(client, "error")).data["code"]


async def second_transcribe(client: AsyncTcpClient, fake: FakeOpenAI, before: int) -> str | None:
    """A second ``transcribe`` mid-utterance replaces the first; the second is answered."""
    await start(client, fake, before)
    await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
    await send_audio(client, PCM)
    await start(client, fake, before + 1)
    await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
    await send_audio(client, PCM)
    await client.write_event(AudioStop().event())
    await read_until(client, "transcript-stop")
    return None


PATHS: dict[str, tuple[Path, str | None, int]] = {
    # name: (path, error code expected, upstream sessions each run opens)
    "rejected-start": (rejected_start, "bad-audio-format", 1),
    "audio-without-start": (audio_without_start, "audio-without-start", 1),
    "bad-chunk-format": (bad_chunk_format, "bad-audio-format", 1),
    "too-long": (too_long, "utterance-too-long", 1),
    "second-transcribe": (second_transcribe, None, 2),
}


@pytest.mark.parametrize("name", list(PATHS))
async def test_an_ended_utterance_releases_its_session_at_once(fake: FakeOpenAI, name: str) -> None:
    path, code, per_run = PATHS[name]
    settings = make_settings(fake.base_url, "--limits-max-utterance-seconds", "1")
    async with running_server(settings) as server:
        assert server.port is not None
        await ha_transcribe(server.port, PCM)  # imports and first-use buffers are not leaks
        await settled(lambda: fake.open_realtime_sessions, 0)
        baseline = open_fds()
        clients = []
        for _ in range(REPEATS):
            client = AsyncTcpClient("127.0.0.1", server.port)
            await client.connect()
            clients.append(client)
            assert await path(client, fake, len(fake.realtime_sessions)) == code
        assert len(fake.realtime_sessions) == 1 + REPEATS * per_run
        # The clients are all still connected: their sessions are released already.
        await settled(lambda: fake.open_realtime_sessions, 0)
        await settled(open_fds, baseline + 2 * len(clients))  # both ends of each
        for client in clients:
            await client.disconnect()
        await settled(open_fds, baseline)


@pytest.mark.parametrize("when", ["mid-utterance", "before-the-transcript"])
async def test_a_client_gone_releases_its_session(fake: FakeOpenAI, when: str) -> None:
    async with running_server(make_settings(fake.base_url)) as server:
        assert server.port is not None
        await ha_transcribe(server.port, PCM)
        await settled(lambda: fake.open_realtime_sessions, 0)
        baseline = open_fds()
        fake.finalize_delay = 30.0  # the transcript would come long after the client left
        for _ in range(REPEATS):
            async with AsyncTcpClient("127.0.0.1", server.port) as client:
                sessions = len(fake.realtime_sessions)
                await start(client, fake, sessions)
                await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
                await send_audio(client, PCM)
                if when == "before-the-transcript":
                    await client.write_event(AudioStop().event())
                    record = fake.realtime_sessions[sessions]
                    await eventually(lambda: bool(record.commits), SETTLE_SECONDS)  # noqa: B023
        await settled(lambda: fake.open_realtime_sessions, 0)
        await settled(open_fds, baseline)


async def test_shutdown_releases_every_session(fake: FakeOpenAI) -> None:
    baseline = open_fds()
    clients = []
    async with running_server(make_settings(fake.base_url)) as server:
        assert server.port is not None
        for _ in range(REPEATS):
            client = AsyncTcpClient("127.0.0.1", server.port)
            await client.connect()
            clients.append(client)
            await start(client, fake, len(fake.realtime_sessions))
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            await send_audio(client, PCM)
        assert fake.open_realtime_sessions == REPEATS
    await settled(lambda: fake.open_realtime_sessions, 0)
    for client in clients:
        with contextlib.suppress(ConnectionError):  # the server closed it
            await client.disconnect()
    await settled(open_fds, baseline)


@pytest.mark.parametrize("warm", ["0", "1"])
async def test_rejected_utterances_with_warm_sessions_leave_only_the_pool(
    fake: FakeOpenAI, warm: str
) -> None:
    """Warm sessions taken by rejected utterances are closed; the pool keeps its own."""
    settings = make_settings(fake.base_url, "--stt-warm-sessions", warm)
    async with running_server(settings) as server:
        assert server.port is not None
        await ha_transcribe(server.port, PCM)
        await settled(lambda: fake.open_realtime_sessions, int(warm))
        baseline = open_fds()
        for _ in range(REPEATS):
            async with AsyncTcpClient("127.0.0.1", server.port) as client:
                await client.write_event(Transcribe(language="en").event())
                await client.write_event(AudioStart(rate=0, width=2, channels=1).event())
                assert (await read_until(client, "error")).data["code"] == "bad-audio-format"
        await settled(lambda: fake.open_realtime_sessions, int(warm))
        await settled(open_fds, baseline)
