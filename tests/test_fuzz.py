"""Property-based: random event sequences and random bytes never break the server.

The real server and the fake OpenAI server run in their own event loop thread for the
whole module; Hypothesis throws connections at them from plain blocking sockets (each
example also checks that ``describe`` is still answered), and the last test proves a
real transcription is still correct afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import ha_transcribe, make_settings
from tests.utterances import piper_16k
from wyoming_openai.server import WyomingOpenAIServer

pytestmark = pytest.mark.slow  # property-based fuzzing

EVENT_TYPES = [
    "describe",
    "transcribe",
    "audio-start",
    "audio-chunk",
    "audio-stop",
    "synthesize",
    "synthesize-start",
    "synthesize-chunk",
    "synthesize-stop",
    "ping",
    "run-pipeline",
    "",
]
DATA_KEYS = ["rate", "width", "channels", "text", "language", "voice", "name", "timestamp"]

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
event_data = st.dictionaries(st.sampled_from(DATA_KEYS) | st.text(max_size=8), values, max_size=5)
# Plausible audio formats most of the time, so the audio paths are really exercised.
audio_data = st.fixed_dictionaries(
    {
        "rate": st.sampled_from([8000, 16000, 22050, 44100, 48000, 0, 1, 10**9]),
        "width": st.sampled_from([1, 2, 3, 4, 0, 7]),
        "channels": st.sampled_from([1, 2, 0, 9]),
    }
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One Wyoming event on the wire, sometimes subtly or grossly broken."""
    kind = draw(st.sampled_from(["event", "event", "event", "audio", "raw", "lie"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    event_type = draw(st.sampled_from(EVENT_TYPES) | st.text(max_size=12))
    data: dict[str, Any] = draw(audio_data if kind == "audio" else event_data)
    if kind == "audio":
        event_type = draw(st.sampled_from(["audio-start", "audio-chunk", "audio-stop"]))
    payload = draw(st.binary(max_size=1200))
    data_bytes = json.dumps(data).encode()
    header: dict[str, Any] = {"type": event_type, "data_length": len(data_bytes)}
    if payload:
        header["payload_length"] = len(payload)
    if kind == "lie":
        header[draw(st.sampled_from(["data_length", "payload_length"]))] = draw(
            st.integers(-5, 10**10) | st.text(max_size=3) | st.none()
        )
    return json.dumps(header).encode() + b"\n" + data_bytes + payload


class ThreadedServers:
    """The fake and the real server in an event loop of their own (a thread)."""

    def __init__(self) -> None:
        self.errors: list[logging.LogRecord] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeOpenAI()
        self.server: WyomingOpenAIServer | None = None
        self.port = 0

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self) -> None:
        await self.fake.start()
        self.server = WyomingOpenAIServer(make_settings(self.fake.base_url))
        await self.server.start()
        assert self.server.port is not None
        self.port = self.server.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.fake.stop()


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def servers() -> Iterator[ThreadedServers]:
    threaded = ThreadedServers()
    collector = _Collect(threaded.errors)  # internal errors, unretrieved task exceptions
    logging.getLogger().addHandler(collector)
    threaded.run(threaded.start())
    yield threaded
    logging.getLogger().removeHandler(collector)
    threaded.run(threaded.stop())
    threaded.loop.call_soon_threadsafe(threaded.loop.stop)
    threaded.thread.join(10)


def answers_describe(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b'{"type": "describe"}\n')
        line = sock.makefile("rb").readline()
    return json.loads(line)["type"] == "info"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=st.lists(frames(), max_size=10), linger=st.booleans())
def test_random_events_and_bytes_never_break_the_server(
    servers: ThreadedServers, stream: list[bytes], linger: bool
) -> None:
    with socket.create_connection(("127.0.0.1", servers.port), timeout=5) as sock:
        try:
            for frame in stream:
                sock.sendall(frame)
            if linger:  # read whatever the server answers for a moment
                sock.settimeout(0.05)
                while sock.recv(65536):
                    pass
        except OSError:
            pass  # the server may close a connection that sent garbage
    assert answers_describe(servers.port)


def test_real_transcription_still_correct_after_the_fuzzing(servers: ThreadedServers) -> None:
    text = "Turn on the kitchen lights."
    servers.fake.transcriber = speech.whisper_transcriber
    pcm = piper_16k(text)
    result = servers.run(ha_transcribe(servers.port, pcm))
    assert result.transcript is not None
    assert speech.normalize_text(result.transcript) == speech.normalize_text(text)
    assert servers.fake.validation_failures == []
    assert [record.getMessage() for record in servers.errors] == []
