"""Drive the real server over TCP the way Home Assistant does.

Event orders follow Home Assistant 2026.11
(``homeassistant/components/wyoming/stt.py`` and ``tts.py``): one connection per request;
STT sends ``transcribe`` before ``audio-start`` and reads concurrently, taking the first
``transcript``; TTS with ``supports_synthesize_streaming`` always streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import wave
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
from pydantic import SecretStr
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from tests.utterances import eventually
from wyoming_openai.config import Settings
from wyoming_openai.config_sources import load_settings
from wyoming_openai.server import WyomingOpenAIServer
from wyoming_openai.web.face import WebFace

if TYPE_CHECKING:
    from tests.fake_openai import FakeOpenAI

API_KEY = "sk-test-fake-key-0123456789"
READ_TIMEOUT = 30.0


def make_settings(base_url: str, *argv: str, api_key: str = API_KEY) -> Settings:
    """Settings for a server on a free 127.0.0.1 port talking to ``base_url`` (not
    advertised over zeroconf: ``tests/test_discovery.py`` covers that). OpenAI's failures
    reach the client (``--fallback none``) unless ``argv`` says otherwise:
    ``tests/test_fallback.py`` covers the local fallback. No warm transcription sessions
    (``--stt-warm-sessions 0``), so each utterance's upstream session is the one it opened,
    unless ``argv`` says otherwise: ``tests/test_warm_sessions.py`` covers them. Piper speaks
    without its random variation (noise scales 0), so Whisper hears its words alike every
    run. No hedged requests (the fake's Whisper, loading its model, is slower than OpenAI's
    ceiling), unless ``argv`` has ``--openai-hedge``: ``tests/test_hedge.py`` covers them."""
    return load_settings(
        [
            "--uri",
            "tcp://127.0.0.1:0",
            "--no-zeroconf",
            "--openai-base-url",
            base_url,
            "--fallback",
            "none",
            "--stt-warm-sessions",
            "0",
            "--no-web",
            "--local-piper-noise-scale",
            "0",
            "--local-piper-noise-w-scale",
            "0",
            *argv,
        ],
        {"OPENAI_API_KEY": api_key, "WYOMING_OPENAI_OPENAI_HEDGE": "false"},
    )


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[WyomingOpenAIServer]:
    """The real server, listening; stopped on exit."""
    server = WyomingOpenAIServer(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def with_web(settings: Settings, **fields: Any) -> Settings:
    """``settings`` with ``web`` fields replaced."""
    return settings.model_copy(update={"web": settings.web.model_copy(update=fields)})


def with_token(settings: Settings, token: str) -> Settings:
    """``settings`` with ``web.token`` set (as ``WYOMING_OPENAI_WEB_TOKEN`` would)."""
    return with_web(settings, token=SecretStr(token))


def settings_with(fake: FakeOpenAI, *argv: str, token: str | None = None) -> Settings:
    """:func:`make_settings` against ``fake``, with ``web.token`` set when ``token`` is."""
    settings = make_settings(fake.base_url, *argv)
    return settings if token is None else with_token(settings, token)


def local_settings(*argv: str, base_url: str | None = None) -> Settings:
    """Settings without an API key (so ``engine: auto`` serves locally) on a free port;
    Piper without its random variation, so Whisper hears its words alike every run."""
    args = ["--uri", "tcp://127.0.0.1:0", "--no-zeroconf", "--no-web"]
    args += ["--local-piper-noise-scale", "0", "--local-piper-noise-w-scale", "0", *argv]
    if base_url:
        args += ["--openai-base-url", base_url]
    return load_settings(args, {})


def fallback_settings(fake: FakeOpenAI, *argv: str) -> Settings:
    """OpenAI with the local fallback, no SDK retries (each retry only adds time here)."""
    return make_settings(
        fake.base_url,
        "--fallback",
        "local",
        "--openai-max-retries",
        "0",
        "--tts-mode",
        "speech",
        *argv,
    )


def sdk_client(face: WebFace, api_key: str = "anything") -> openai.AsyncOpenAI:
    """The official SDK pointed at the web face (no retries: each answer is the first)."""
    return openai.AsyncOpenAI(
        base_url=face.url + "v1", api_key=api_key, max_retries=0, timeout=READ_TIMEOUT
    )


@contextlib.asynccontextmanager
async def running_web(settings: Settings) -> AsyncIterator[tuple[WyomingOpenAIServer, WebFace]]:
    """The Wyoming server and the web face on the same engines, as the process runs them;
    the web face on a free 127.0.0.1 port (``settings.web``'s other fields apply)."""
    scheme = settings.web.uri.split("://", 1)[0]  # http, or https with its certificate
    uri = f"{scheme}://127.0.0.1:0"
    web_settings = settings.web.model_copy(update={"enabled": True, "uri": uri})
    settings = settings.model_copy(update={"web": web_settings})
    server = WyomingOpenAIServer(settings)
    face = WebFace(settings, server.engines)
    await face.start()
    try:
        await server.start()
        face.ready = True
        yield server, face
    finally:
        await face.stop()
        await server.stop()


async def describe(port: int) -> Info:
    """What Home Assistant's config flow does: ``describe`` -> ``info``."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
            assert event is not None, "connection closed before info"
            if Info.is_type(event.type):
                return Info.from_event(event)


def chunks_of(pcm: bytes, rate: int, width: int, channels: int, ms: int = 10) -> list[bytes]:
    """``pcm`` cut into ``ms``-millisecond chunks (HA sends 10 ms: 320 bytes at 16 kHz)."""
    size = max(rate * ms // 1000 * width * channels, 320)  # impossible formats still send
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


@dataclass
class _Answer:
    """The events the server answered with, in order."""

    events: list[Event] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.events]

    @property
    def error(self) -> Error | None:
        """The first ``error`` event, if any."""
        for event in self.events:
            if Error.is_type(event.type):
                return Error.from_event(event)
        return None


@dataclass
class SttResult(_Answer):
    """Everything the server answered to one transcription, with timings (monotonic s)."""

    audio_stop_at: float = 0.0
    transcript_at: float | None = None

    @property
    def transcript(self) -> str | None:
        for event in self.events:
            if Transcript.is_type(event.type):
                return Transcript.from_event(event).text
        return None


async def ha_transcribe(
    port: int,
    pcm: bytes,
    rate: int = 16000,
    width: int = 2,
    channels: int = 1,
    language: str | None = "en",
    transcribe: Transcribe | None = None,
    realtime: bool = False,
    chunk_ms: int = 10,
    until: str = "transcript-stop",
) -> SttResult:
    """Home Assistant's STT request: ``transcribe``, ``audio-start``, chunks, ``audio-stop``.

    Args:
        realtime: pace the chunks in real time (as a microphone does).
        until: read events until this type (or an ``error``, or the connection closes).
    """
    result = SttResult()
    async with AsyncTcpClient("127.0.0.1", port) as client:

        async def read() -> None:
            while True:
                event = await client.read_event()
                if event is None:
                    return
                result.events.append(event)
                if Transcript.is_type(event.type) and result.transcript_at is None:
                    result.transcript_at = time.monotonic()
                if event.type in (until, "error"):
                    return

        reader = asyncio.create_task(read())
        await client.write_event((transcribe or Transcribe(language=language)).event())
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        started = time.monotonic()
        for index, chunk in enumerate(chunks_of(pcm, rate, width, channels, chunk_ms)):
            await client.write_event(
                AudioChunk(rate=rate, width=width, channels=channels, audio=chunk).event()
            )
            if realtime:
                delay = started + (index + 1) * chunk_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        result.audio_stop_at = time.monotonic()
        await client.write_event(AudioStop().event())
        await asyncio.wait_for(reader, READ_TIMEOUT)
    return result


@dataclass
class TtsResult(_Answer):
    """The answer to a synthesis: events in order, the audio, its format."""

    arrival_times: list[float] = field(default_factory=list)
    started_at: float = 0.0
    first_audio_at: float | None = None

    @property
    def audio(self) -> bytes:
        return b"".join(
            event.payload or b"" for event in self.events if AudioChunk.is_type(event.type)
        )

    @property
    def formats(self) -> set[tuple[int, int, int]]:
        """(rate, width, channels) of every audio-start and audio-chunk."""
        found = set()
        for event in self.events:
            if event.type in ("audio-start", "audio-chunk"):
                found.add((event.data["rate"], event.data["width"], event.data["channels"]))
        return found


async def _read_tts(client: AsyncTcpClient, result: TtsResult, until: str) -> None:
    while True:
        event = await asyncio.wait_for(client.read_event(), READ_TIMEOUT)
        if event is None:
            return
        result.events.append(event)
        result.arrival_times.append(time.monotonic())
        if AudioChunk.is_type(event.type) and result.first_audio_at is None:
            result.first_audio_at = time.monotonic()
        if event.type in (until, "error"):
            return


async def ha_synthesize(port: int, text: str, voice: str | None = None) -> TtsResult:
    """Plain ``synthesize`` (a server without streaming support, or another client)."""
    result = TtsResult()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        result.started_at = time.monotonic()
        await client.write_event(
            Synthesize(text=text, voice=SynthesizeVoice(name=voice) if voice else None).event()
        )
        await _read_tts(client, result, AudioStop().event().type)
    return result


async def ha_synthesize_stream(
    port: int, chunks: Iterable[str], voice: str | None = None, chunk_delay: float = 0.0
) -> TtsResult:
    """Home Assistant's streaming TTS: ``synthesize-start``, ``synthesize-chunk``*, the
    full-text ``synthesize``, ``synthesize-stop``; read until ``synthesize-stopped``."""
    pieces = list(chunks)
    result = TtsResult()
    voice_obj = SynthesizeVoice(name=voice) if voice else None
    async with AsyncTcpClient("127.0.0.1", port) as client:
        reader = asyncio.create_task(_read_tts(client, result, SynthesizeStopped().event().type))
        result.started_at = time.monotonic()
        await client.write_event(SynthesizeStart(voice=voice_obj).event())
        for piece in pieces:
            await client.write_event(SynthesizeChunk(text=piece).event())
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
        await client.write_event(Synthesize(text="".join(pieces), voice=voice_obj).event())
        await client.write_event(SynthesizeStop().event())
        await asyncio.wait_for(reader, READ_TIMEOUT)
    return result


def whole_wav(path: Path) -> bool:
    """Whether ``path`` is a WAV file holding every frame its header announces."""
    try:
        with wave.open(str(path), "rb") as wav:
            frames = wav.getnframes()
            size = frames * wav.getsampwidth() * wav.getnchannels()
            return len(wav.readframes(frames)) == size
    except (OSError, EOFError, wave.Error):
        return False


async def dumped_wavs(directory: Path, count: int) -> list[Path]:
    """The WAV files of ``directory`` (sorted by name), once there are ``count`` and each is
    whole: the server writes them in a worker thread after the utterance, so one may be
    seen half-written (a hang guard, not an assertion on time)."""

    files: list[Path] = []

    def written() -> bool:
        files[:] = sorted(directory.glob("*.wav"))
        return len(files) >= count and all(whole_wav(path) for path in files)

    await eventually(written, READ_TIMEOUT)
    return files


def logged_problems(records: Iterable[logging.LogRecord]) -> list[str]:
    """Messages of the server's (and aiohttp's) records at ERROR or with a traceback: what
    a client's failure must never leave in the log."""
    return [
        r.getMessage()
        for r in records
        if r.name.startswith(("wyoming_openai", "aiohttp"))
        and (r.levelno >= logging.ERROR or r.exc_info)
    ]
