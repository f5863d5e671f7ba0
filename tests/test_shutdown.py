"""Docker stop: SIGTERM ends open sessions and the process quickly and cleanly.

The server runs as a real subprocess (``python -m wyoming_openai``) against the fake OpenAI
server, with a transcription streaming into a realtime session and a synthesis streaming
audio out when SIGTERM arrives.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.tts import SynthesizeChunk, SynthesizeStart

from tests.fake_openai import DEFAULT_API_KEY, FakeOpenAI
from tests.mdns_lab import EXIT_TIMEOUT, ServerProcess
from tests.utterances import eventually

pytestmark = pytest.mark.slow  # server subprocesses

SILENCE_10MS = bytes(320)  # 16 kHz, 16-bit mono


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_until_closed(client: AsyncTcpClient) -> list[Event]:
    """Every event until the server closes the connection."""
    events = []
    async with asyncio.timeout(EXIT_TIMEOUT):
        while (event := await client.read_event()) is not None:
            events.append(event)
    return events


async def test_sigterm_closes_open_sessions_and_exits_0() -> None:
    fake = FakeOpenAI(api_key=DEFAULT_API_KEY, tts_chunk_bytes=4800)
    fake.speech_pause = asyncio.Event()  # never set: the speech body stops after 0.1 s of audio
    await fake.start()
    port = free_port()
    server = await ServerProcess.start(
        [], "127.0.0.1", "--no-zeroconf", port=port, base_url=fake.base_url,
        api_key=DEFAULT_API_KEY,
    )  # fmt: skip
    stt = AsyncTcpClient("127.0.0.1", port)
    tts = AsyncTcpClient("127.0.0.1", port)
    try:
        # A person still talking: realtime session open, audio flowing, no audio-stop.
        await stt.connect()
        await stt.write_event(Transcribe(language="en").event())
        await stt.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for _ in range(30):
            chunk = AudioChunk(rate=16000, width=2, channels=1, audio=SILENCE_10MS)
            await stt.write_event(chunk.event())
        # The utterance's session: the one its audio goes to (a warm session may have
        # been opened ahead of it, and may be the one).
        await eventually(lambda: any(s.audio for s in fake.realtime_sessions), EXIT_TIMEOUT)
        (session,) = [s for s in fake.realtime_sessions if s.audio]

        # A reply still being spoken (its first 0.1 s sent, the rest held back).
        await tts.connect()
        await tts.write_event(SynthesizeStart().event())
        await tts.write_event(SynthesizeChunk(text="The lights are off in the kitchen. ").event())
        await tts.write_event(SynthesizeChunk(text="And").event())
        async with asyncio.timeout(EXIT_TIMEOUT):
            while (event := await tts.read_event()) is not None:
                if AudioChunk.is_type(event.type):
                    break
        assert event is not None, "no audio before SIGTERM"

        started = time.monotonic()
        code = await server.terminate()
        elapsed = time.monotonic() - started
        stt_rest = await read_until_closed(stt)
        tts_rest = await read_until_closed(tts)
        await asyncio.wait_for(session.closed.wait(), EXIT_TIMEOUT)
    finally:
        await server.kill()
        await stt.disconnect()
        await tts.disconnect()
        await fake.stop()

    assert code == 0, server.text
    assert "Traceback" not in server.text, server.text
    assert " ERROR " not in server.text and "Task was destroyed" not in server.text, server.text
    assert "Stopping" in server.text
    # Both connections were closed by the server, not left hanging; the upstream realtime
    # session was closed and the speech stream was not played to its end.
    assert all(e.type != "transcript" for e in stt_rest)
    assert all(e.type != "synthesize-stopped" for e in tts_rest)
    assert session.closed.is_set()
    assert fake.speech_streams and not fake.speech_streams[0].completed
    print(f"SIGTERM to exit with two open sessions: {elapsed * 1000:.0f} ms")
