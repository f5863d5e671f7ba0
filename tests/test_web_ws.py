"""``WS /v1/transcriptions`` with a plain WebSocket client (aiohttp), against the fake OpenAI
server: the seed protocol, continuous sessions, every format, errors, tokens and origins."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import numpy as np
import pytest

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import (
    READ_TIMEOUT,
    make_settings,
    running_web,
    settings_with,
    with_web,
)
from tests.utterances import (
    RATE,
    command,
    dominant_hz,
    eventually,
    piper_16k,
    room_noise,
    spoken,
    tone,
    use_whisper,
)
from wyoming_openai.audio import AudioFormat
from wyoming_openai.config import Settings
from wyoming_openai.resample import AudioConverter
from wyoming_openai.web.face import WebFace

CHUNK_MS = 20
CLIENT_FORMAT = AudioFormat(RATE, 2, 1)
"""16 kHz s16le mono, as the seed's clients and the page send."""


@contextlib.asynccontextmanager
async def web_face(settings: Settings) -> AsyncIterator[WebFace]:
    async with running_web(settings) as (_server, face):
        yield face


def ws_url(face: WebFace) -> str:
    return face.url.replace("http://", "ws://") + "v1/transcriptions"


@contextlib.asynccontextmanager
async def connect(face: WebFace, **kwargs: Any) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url(face), **kwargs) as ws,
    ):
        yield ws


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
    """The next JSON message, or None once the server closed."""
    message = await asyncio.wait_for(ws.receive(), READ_TIMEOUT)
    if message.type == aiohttp.WSMsgType.TEXT:
        return json.loads(message.data)
    return None


async def send_audio(ws: aiohttp.ClientWebSocketResponse, pcm: bytes, fmt: AudioFormat) -> None:
    step = fmt.bytes_for_ms(CHUNK_MS)
    for start in range(0, len(pcm), step):
        await ws.send_bytes(pcm[start : start + step])


async def messages_until_stopped(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    found = []
    while (message := await receive(ws)) is not None:
        found.append(message)
        if message.get("stopped") or "error" in message:
            break
    return found


async def transcribe(
    ws: aiohttp.ClientWebSocketResponse,
    pcm: bytes,
    fmt: AudioFormat = CLIENT_FORMAT,
    **start: Any,
) -> list[dict[str, Any]]:
    """``start`` (with ``start``'s fields), ``pcm`` in real-time-sized frames, ``stop``:
    every message after ``session_id``, up to ``stopped`` or an error."""
    await ws.send_json({"action": "start", **start})
    await receive(ws)
    await send_audio(ws, pcm, fmt)
    await ws.send_json({"action": "stop"})
    return await messages_until_stopped(ws)


def finals(messages: list[dict[str, Any]]) -> list[str]:
    return [m["final"] for m in messages if "final" in m]


async def error_and_close(ws: aiohttp.ClientWebSocketResponse) -> tuple[dict[str, Any], int | None]:
    """The last message before the server closed (asserted to be an error), and the close
    code."""
    received = []
    while (message := await receive(ws)) is not None:
        received.append(message)
    assert received and "error" in received[-1], received
    return received[-1], ws.close_code


async def send_chunks(ws: aiohttp.ClientWebSocketResponse, data: bytes, size: int) -> None:
    for start in range(0, len(data), size):
        await ws.send_bytes(data[start : start + size])


# ------------------------------------------------------------------ client audio formats


def _av() -> Any:
    return pytest.importorskip("av")


def resampled(pcm16k: bytes, rate: int) -> bytes:
    """16 kHz s16le mono ``pcm16k`` at ``rate`` Hz."""
    converter = AudioConverter(AudioFormat(RATE, 2, 1), AudioFormat(rate, 2, 1))
    return converter.convert(pcm16k) + converter.flush()


def g711(pcm: bytes, audio_format: str, rate: int) -> bytes:
    """s16le mono ``pcm`` at ``rate`` Hz as G.711 bytes (FFmpeg's encoder)."""
    av = _av()
    ctx = av.CodecContext.create(
        {"g711_ulaw": "pcm_mulaw", "g711_alaw": "pcm_alaw"}[audio_format], "w"
    )
    ctx.sample_rate = rate
    ctx.layout = "mono"
    ctx.format = "s16"
    samples = np.frombuffer(pcm, "<i2")
    frame = av.AudioFrame.from_ndarray(samples[None, :].copy(), format="s16", layout="mono")
    frame.rate = rate
    return b"".join(bytes(packet) for packet in ctx.encode(frame) + ctx.encode(None))


class _LiveSink(io.RawIOBase):
    """A non-seekable sink: the muxer writes a live stream, as MediaRecorder does."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += b
        return len(b)


def webm_opus(pcm16k: bytes) -> bytes:
    """16 kHz s16le mono ``pcm16k`` as a live WebM/Opus stream (what MediaRecorder makes
    for ``audio/webm;codecs=opus``: Opus at 48 kHz, 20 ms frames)."""
    av = _av()
    samples = np.frombuffer(resampled(pcm16k, 48000), "<i2")
    sink = _LiveSink()
    with av.open(sink, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        for start in range(0, len(samples), 960):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 960].copy(), format="s16", layout="mono"
            )
            frame.rate = 48000
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return bytes(sink.data)


def encoded(pcm16k: bytes, audio_format: str, rate: int | None) -> tuple[bytes, int]:
    """``pcm16k`` as a client sends it in ``audio_format`` at ``rate``: ``(bytes, bytes
    per message)``; 20 ms messages, ~1,000-byte ones for WebM (MediaRecorder's timeslice)."""
    if audio_format == "webm_opus":
        return webm_opus(pcm16k), 1000
    assert rate is not None
    pcm = resampled(pcm16k, rate)
    if audio_format == "pcm16":
        return pcm, AudioFormat(rate, 2, 1).bytes_for_ms(CHUNK_MS)
    return g711(pcm, audio_format, rate), rate * CHUNK_MS // 1000


def start_message(audio_format: str, rate: int | None) -> dict[str, Any]:
    message: dict[str, Any] = {"action": "start", "language": "en", "format": audio_format}
    if rate is not None:
        message["rate"] = rate
    return message


def upstream_ms(fake: FakeOpenAI) -> float:
    """Milliseconds of audio every upstream session got, together (24 kHz s16le)."""
    return sum(len(record.audio) for record in fake.realtime_sessions) / 48


async def test_seed_client_start_audio_stop_gets_partials_and_the_final(fake: FakeOpenAI) -> None:
    """A client written as the seed's README describes: start, binary PCM16, stop."""
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        await ws.send_json({"action": "start", "language": "en"})
        first = await receive(ws)
        assert first is not None and isinstance(first.get("session_id"), str)
        await send_audio(ws, command("Turn on the kitchen lights."), AudioFormat(RATE, 2, 1))
        await ws.send_json({"action": "stop"})
        messages = await messages_until_stopped(ws)
        assert messages[-1] == {"stopped": True}
        assert finals(messages) == ["hello world"]
        assert all(set(m) <= {"partial", "final", "latency_ms", "stopped"} for m in messages)
        closing = await ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1000


@pytest.mark.slow
async def test_two_sentences_with_a_pause_give_two_finals_and_nothing_is_lost(
    fake: FakeOpenAI,
) -> None:
    use_whisper(fake)
    first, second = "Turn on the kitchen lights.", "Lock the front door."
    pcm = piper_16k(first) + room_noise(1.5) + piper_16k(second) + room_noise(1.5)
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        messages = await transcribe(ws, pcm, language="en")
    got = [speech.normalize_text(text) for text in finals(messages)]
    assert got == [speech.normalize_text(first), speech.normalize_text(second)]


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
async def test_pcm16_at_any_rate_is_resampled_and_transcribed(fake: FakeOpenAI, rate: int) -> None:
    converter = AudioConverter(AudioFormat(RATE, 2, 1), AudioFormat(rate, 2, 1))
    pcm = converter.convert(command("Turn on the kitchen lights.")) + converter.flush()
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        assert finals(
            await transcribe(ws, pcm, AudioFormat(rate, 2, 1), format="pcm16", rate=rate)
        ) == ["hello world"]
    (record,) = fake.realtime_sessions
    sent_ms = len(record.audio) / 48
    # All of it went upstream but what the resampler still held when the detector ended
    # the utterance in the trailing room noise (its filter delay: tens of ms).
    assert 0 <= len(pcm) / (2 * rate) * 1000 - sent_ms < 100


@pytest.mark.parametrize(
    ("messages", "code", "close"),
    [
        (["not json"], "bad-request", 1003),
        ([{"action": "dance"}], "bad-request", 1003),
        ([b"\x00\x01"], "audio-without-start", 1003),
        ([{"action": "start"}, {"action": "start"}], "bad-request", 1003),
        ([{"action": "start", "format": "mp3"}], "unsupported-format", 1003),
        ([{"action": "start", "rate": 0}], "bad-audio-format", 1003),
        ([{"action": "start", "rate": "fast"}], "bad-request", 1003),
    ],
)
async def test_bad_input_gets_an_error_with_its_code_and_close(
    fake: FakeOpenAI, messages: list[Any], code: str, close: int
) -> None:
    async with web_face(settings_with(fake)) as face:
        async with connect(face) as ws:
            for message in messages:
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                elif isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_json(message)
            received = []
            while (answer := await receive(ws)) is not None:
                received.append(answer)
            error = received[-1]
            assert error["code"] == code and error["error"], received
            assert ws.close_code == close
        async with connect(face) as other:  # the server goes on
            await other.send_json({"action": "start"})
            assert "session_id" in (await receive(other) or {})


async def test_token_is_required_in_start_or_the_protocol_header(fake: FakeOpenAI) -> None:
    async with web_face(settings_with(fake, token="s3cret")) as face:
        async with connect(face) as ws:
            await ws.send_json({"action": "start"})
            error = await receive(ws)
            assert error is not None and error["code"] == "unauthorized"
            assert "s3cret" not in json.dumps(error)
            await receive(ws)
            assert ws.close_code == 1008
        async with connect(face) as ws:
            await ws.send_json({"action": "start", "token": "s3cret"})
            assert "session_id" in (await receive(ws) or {})
        async with connect(face, protocols=("bearer.s3cret",)) as ws:
            assert ws.protocol == "bearer.s3cret"
            await ws.send_json({"action": "start"})
            assert "session_id" in (await receive(ws) or {})
        async with connect(face, protocols=("bearer.wrong",)) as ws:
            error = await receive(ws)
            assert error is not None and error["code"] == "unauthorized"


async def test_a_page_of_another_origin_is_refused(fake: FakeOpenAI) -> None:
    async with web_face(settings_with(fake)) as face:
        async with connect(face, origin="http://evil.example") as ws:
            error = await receive(ws)
            assert error is not None and error["code"] == "forbidden-origin"
            await receive(ws)
            assert ws.close_code == 1008
        own = face.url.rstrip("/")
        async with connect(face, origin=own) as ws:
            await ws.send_json({"action": "start"})
            assert "session_id" in (await receive(ws) or {})


async def test_healthz_names_the_engines(fake: FakeOpenAI) -> None:
    async with (
        web_face(settings_with(fake)) as face,
        aiohttp.ClientSession() as session,
        session.get(face.url + "healthz") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["stt"]["engine"] == "openai" and body["stt"]["model"]
    assert body["tts"]["voice"] == "alloy" and "alloy" in body["tts"]["voices"]
    assert body["fallback"] is False and body["token_required"] is False


# ------------------------------------------------------------------ every format


@pytest.mark.parametrize(
    ("audio_format", "rate"),
    [
        ("g711_ulaw", 8000),
        ("g711_ulaw", 16000),
        ("g711_alaw", 8000),
        ("g711_alaw", 16000),
        ("webm_opus", None),
    ],
)
async def test_g711_and_webm_opus_are_decoded_and_transcribed(
    fake: FakeOpenAI, audio_format: str, rate: int | None
) -> None:
    pcm = command("Turn on the kitchen lights.")
    data, size = encoded(pcm, audio_format, rate)
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        await ws.send_json(start_message(audio_format, rate))
        assert "session_id" in (await receive(ws) or {})
        await send_chunks(ws, data, size)
        await ws.send_json({"action": "stop"})
        messages = await messages_until_stopped(ws)
    assert messages[-1] == {"stopped": True}
    assert finals(messages) == ["hello world"]
    # Decoded at the declared rate: upstream got as long an utterance as was spoken (a
    # wrong rate would stretch or squeeze it by 2x or more; 100 ms: resampler and codec
    # edges).
    assert abs(len(pcm) / 32 - upstream_ms(fake)) < 100


@pytest.mark.slow
@pytest.mark.parametrize(
    ("audio_format", "rate"),
    [("pcm16", 16000), ("g711_ulaw", 8000), ("g711_alaw", 8000), ("webm_opus", None)],
)
async def test_real_speech_in_every_format_gives_the_right_words(
    fake: FakeOpenAI, audio_format: str, rate: int | None
) -> None:
    use_whisper(fake)
    text = "Lock the front door and close the garage."
    data, size = encoded(command(text), audio_format, rate)
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        await ws.send_json(start_message(audio_format, rate))
        await receive(ws)
        await send_chunks(ws, data, size)
        await ws.send_json({"action": "stop"})
        messages = await messages_until_stopped(ws)
    assert [speech.normalize_text(t) for t in finals(messages)] == [speech.normalize_text(text)]


# ------------------------------------------------------------------ sessions


async def test_two_commands_with_a_pause_give_two_finals_and_lose_no_audio(
    fake: FakeOpenAI,
) -> None:
    """The fast variant of the real-speech test above: each utterance its own upstream
    session, and between them every byte sent went upstream, in order."""
    pcm = (
        command("Turn on the kitchen lights.", tail_seconds=1.5)
        + spoken("Lock the front door.")
        + room_noise(0.3, seed=7)  # shorter than the silence that ends an utterance
    )
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        messages = await transcribe(ws, pcm, language="en")
    assert finals(messages) == ["hello world", "hello world"]
    assert len(fake.realtime_sessions) == 2
    assert all(record.commits for record in fake.realtime_sessions)
    upstream = b"".join(bytes(record.audio) for record in fake.realtime_sessions)
    expected = resampled(pcm, 24000)
    # The same audio: one stream resampled once, cut between the sessions.
    assert abs(len(upstream) - len(expected)) <= 2 * 24  # a millisecond
    got = np.frombuffer(upstream, "<i2").astype(np.float64)
    want = np.frombuffer(expected, "<i2").astype(np.float64)
    count = min(len(got), len(want))
    error = got[:count] - want[:count]
    assert np.sqrt(np.mean(error**2)) < 0.01 * np.sqrt(np.mean(want**2))


async def test_stop_mid_sentence_gives_the_final_of_what_was_heard(fake: FakeOpenAI) -> None:
    said = spoken("Turn on the kitchen lights.")
    pcm = room_noise(0.2) + said[: len(said) // 4 * 2]  # cut half-way through the words
    async with web_face(settings_with(fake)) as face, connect(face) as ws:
        messages = await transcribe(ws, pcm, language="en")
        assert messages[-1] == {"stopped": True}
        assert finals(messages) == ["hello world"]
        assert "final" in messages[-2]  # the final, then stopped
        closing = await ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1000
    (record,) = fake.realtime_sessions
    # Everything heard was transcribed: all of it went upstream and was committed.
    assert abs(len(record.audio) / 48 - len(pcm) / 32) < 1
    assert sum(len(commit) for commit in record.commits) == len(record.audio)


# ------------------------------------------------------------------ every error case


@pytest.mark.parametrize("kind", ["audio", "text"])
async def test_a_message_over_the_frame_limit_closes_with_1009(fake: FakeOpenAI, kind: str) -> None:
    settings = with_web(settings_with(fake), max_frame_bytes=1024)
    async with web_face(settings) as face, connect(face) as ws:
        if kind == "audio":
            await ws.send_json({"action": "start"})
            await receive(ws)
            await ws.send_bytes(bytes(1024))  # at the limit: taken
            await ws.send_bytes(bytes(2048))
        else:
            await ws.send_json({"action": "start", "language": "x" * 2000})
        error, close = await error_and_close(ws)
    assert error["code"] == "frame-too-large" and error["error"]
    assert close == 1009


async def test_a_session_longer_than_the_limit_closes_with_1009(fake: FakeOpenAI) -> None:
    settings = with_web(settings_with(fake), max_session_seconds=1.0)
    async with web_face(settings) as face, connect(face) as ws:
        await ws.send_json({"action": "start"})
        await receive(ws)
        await send_audio(ws, command("Turn on the kitchen lights."), AudioFormat(RATE, 2, 1))
        error, close = await error_and_close(ws)
        assert error["code"] == "session-too-long" and "1 s" in error["error"]
        assert close == 1009
        await eventually(lambda: face.session_count == 0, READ_TIMEOUT)
        assert fake.realtime_sessions  # its upstream sessions are released with it
        for record in fake.realtime_sessions:
            await asyncio.wait_for(record.closed.wait(), READ_TIMEOUT)


async def test_too_many_sessions_refuses_the_next_one_and_spares_the_first(
    fake: FakeOpenAI,
) -> None:
    settings = with_web(settings_with(fake), max_sessions=1)
    async with web_face(settings) as face:
        async with connect(face) as first:
            await first.send_json({"action": "start", "language": "en"})
            assert "session_id" in (await receive(first) or {})
            async with connect(face) as second:
                error, close = await error_and_close(second)
            assert error["code"] == "too-many-sessions" and close == 1013
            await send_audio(first, command("Turn on the kitchen lights."), AudioFormat(RATE, 2, 1))
            await first.send_json({"action": "stop"})
            messages = await messages_until_stopped(first)
            assert messages[-1] == {"stopped": True}
            assert finals(messages) == ["hello world"]
        await eventually(lambda: face.session_count == 0, READ_TIMEOUT)
        async with connect(face) as later:  # the slot is free again
            await later.send_json({"action": "start"})
            assert "session_id" in (await receive(later) or {})


async def test_garbage_declared_as_webm_opus_is_bad_audio_format(fake: FakeOpenAI) -> None:
    _av()
    garbage = np.random.default_rng(5).bytes(8000)
    async with web_face(settings_with(fake)) as face:
        async with connect(face) as ws:
            await ws.send_json({"action": "start", "format": "webm_opus"})
            await receive(ws)
            await send_chunks(ws, garbage, 1000)
            await ws.send_json({"action": "stop"})
            error, close = await error_and_close(ws)
        assert error["code"] == "bad-audio-format" and "webm" in error["error"]
        assert close == 1003
        await eventually(lambda: face.session_count == 0, READ_TIMEOUT)


async def test_openai_down_is_an_upstream_error_with_1013_not_a_traceback(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.reject_connections = True
    settings = settings_with(fake, "--openai-max-retries", "0")
    async with web_face(settings) as face:
        async with connect(face) as ws:
            await ws.send_json({"action": "start", "language": "en"})
            await receive(ws)
            await send_audio(ws, command("Turn on the kitchen lights."), AudioFormat(RATE, 2, 1))
            await ws.send_json({"action": "stop"})
            error, close = await error_and_close(ws)
        assert error["code"] == "upstream-unavailable", error
        assert "Traceback" not in error["error"] and "internal" not in error["error"]
        assert close == 1013
        assert fake.rejected_requests >= 1
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
        fake.reject_connections = False  # OpenAI is back: the next session is served
        async with connect(face) as ws:
            assert finals(
                await transcribe(ws, command("Turn on the kitchen lights."), language="en")
            ) == ["hello world"]


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked WebSocket frame, as a client sends it (RFC 6455 §5.2)."""
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    data = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), length)
    return header + mask + data.tobytes()


async def test_a_client_that_vanishes_releases_its_upstream_session_at_once(
    fake: FakeOpenAI,
) -> None:
    """The TCP connection drops mid-sentence (no close frame: a phone leaving Wi-Fi)."""
    said = spoken("Turn on the kitchen lights.")
    pcm = room_noise(0.2) + said[: len(said) // 4 * 2]
    async with web_face(settings_with(fake)) as face:
        url = urlparse(face.url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /v1/transcriptions HTTP/1.1\r\n"
                f"Host: {url.hostname}:{url.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        handshake = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        assert handshake.startswith(b"HTTP/1.1 101")
        writer.write(_client_frame(0x1, json.dumps({"action": "start"}).encode()))
        step = AudioFormat(RATE, 2, 1).bytes_for_ms(CHUNK_MS)
        for start in range(0, len(pcm), step):
            writer.write(_client_frame(0x2, pcm[start : start + step]))
        await writer.drain()
        async with asyncio.timeout(READ_TIMEOUT):
            record = await fake.wait_for_realtime_session()
        await eventually(lambda: len(record.audio) > 0, READ_TIMEOUT)
        assert face.session_count == 1 and not record.closed.is_set()
        writer.transport.abort()  # gone: no close frame, no FIN
        # Released on the drop, well before any heartbeat (30 s) would notice.
        await asyncio.wait_for(record.closed.wait(), READ_TIMEOUT / 2)
        await eventually(lambda: face.session_count == 0, READ_TIMEOUT)


# ------------------------------------------------------------------ many sessions

WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango",
]  # fmt: skip
TONES = [1000.0 + 250.0 * index for index in range(len(WORDS))]
"""Hz of each client's tone, mixed under its speech; the fake answers its word."""


def word_of_tone(pcm24k: bytes, language: str | None, prompt: str | None) -> str:
    """A transcriber that hears which client spoke: the word of the loudest tone."""
    del language, prompt
    heard = dominant_hz(pcm24k)
    index = min(range(len(TONES)), key=lambda i: abs(TONES[i] - heard))
    return WORDS[index] if abs(TONES[index] - heard) < 50 else "?"


def with_tone(pcm16k: bytes, freq: float) -> bytes:
    """``pcm16k`` with a quiet tone (-29 dBFS) at ``freq`` Hz under it."""
    samples = np.frombuffer(pcm16k, "<i2").astype(np.float64)
    hum = np.frombuffer(tone(freq, len(samples) / RATE + 0.01, RATE), "<i2")[: len(samples)]
    mixed = samples + 0.1 * hum.astype(np.float64)
    return np.clip(mixed, -32768, 32767).astype("<i2").tobytes()


async def test_twenty_sessions_at_once_each_get_their_own_text(fake: FakeOpenAI) -> None:
    fake.transcriber = word_of_tone
    said = command("Turn on the kitchen lights.")
    clips = [with_tone(said, freq) for freq in TONES]
    ready = asyncio.Barrier(len(clips))

    async def client(face: WebFace, pcm: bytes) -> list[str]:
        async with connect(face) as ws:
            await ws.send_json({"action": "start", "language": "en"})
            assert "session_id" in (await receive(ws) or {})
            await ready.wait()  # all sessions open before anyone speaks
            await send_audio(ws, pcm, AudioFormat(RATE, 2, 1))
            await ws.send_json({"action": "stop"})
            messages = await messages_until_stopped(ws)
            assert messages[-1] == {"stopped": True}, messages
            return finals(messages)

    async with web_face(settings_with(fake)) as face:
        got = await asyncio.gather(*(client(face, pcm) for pcm in clips))
    assert got == [[word] for word in WORDS]
    assert len(fake.realtime_sessions) >= len(WORDS)  # an upstream session each


# ------------------------------------------------------------------ origins


async def test_an_allowed_origin_may_open_the_socket(fake: FakeOpenAI) -> None:
    settings = with_web(settings_with(fake), allowed_origins=["https://ha.example:8123/"])
    async with web_face(settings) as face:
        async with connect(face, origin="https://ha.example:8123") as ws:
            await ws.send_json({"action": "start"})
            assert "session_id" in (await receive(ws) or {})
        async with connect(face, origin="https://other.example:8123") as ws:
            error, close = await error_and_close(ws)
            assert error["code"] == "forbidden-origin" and close == 1008


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files), made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


async def test_https_serves_the_page_and_the_websocket(
    fake: FakeOpenAI, self_signed: tuple[Path, Path]
) -> None:
    """``https://`` with ``web.certfile``/``web.keyfile`` (a self-signed certificate): what
    a browser on another machine needs for the microphone."""
    cert, key = self_signed
    settings = make_settings(
        fake.base_url,
        "--web-uri",
        "https://127.0.0.1:10301",
        "--web-certfile",
        str(cert),
        "--web-keyfile",
        str(key),
    )
    async with web_face(settings) as face:
        assert face.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        async with aiohttp.ClientSession() as session:
            async with session.get(face.url + "healthz", ssl=context) as response:
                assert response.status == 200
            async with session.get(face.url, ssl=context) as response:
                assert "<html" in (await response.text()).lower()
            url = face.url.replace("https://", "wss://") + "v1/transcriptions"
            async with session.ws_connect(url, ssl=context) as ws:
                await ws.send_json({"action": "start"})
                assert "session_id" in (await receive(ws) or {})
        with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served there
            async with aiohttp.ClientSession() as session:
                await session.get(face.url.replace("https://", "http://") + "healthz")
