"""Latency, CPU and memory of the real server against the fake OpenAI server.

The server runs in its own process (``python -m wyoming_openai``, as deployed, without the
local engines: ``--fallback none``), so its CPU time and memory are its own; the fake
OpenAI server (``tests/fake_openai/``) and the Home Assistant-like clients run here, on
127.0.0.1. Audio is HA-realistic: Piper speech from ``tests/speech.py`` preceded by 0.2 s
and followed by 0.7 s of quiet room noise (-50 dBFS pink noise and hum, not digital zero:
Home Assistant's default silence before ``audio-stop``), in 10 ms chunks paced in real
time. Rows (median and p95 over the runs, milliseconds unless stated):

- STT ``audio-stop`` -> ``transcript`` (what the user waits for after the silence) with a
  backend that finalizes in 150 ms and in 450 ms after a commit, with speculative commit
  on (the default) and off; the bridge's own share of it (the time outside the fake: from
  ``audio-stop`` to a commit sent after it, and from the fake's last
  ``...completed`` -- or ``audio-stop`` if later -- to the client's ``transcript``);
- ``audio-start`` -> first audio at the fake, for 16 kHz clients (resampled: the first
  10 ms chunk gives the first 4 ms of 24 kHz audio, see ``resample.AudioConverter``) and
  24 kHz clients (no resampling: what the session itself adds);
- WER of the real-speech corpus (``tests.utterances.COMMANDS``, each in 4 room-noise
  renditions, transcribed by Whisper tiny.en in the fake), speculative commit vs commit at
  ``audio-stop``;
- TTS added time to first audio: request (plain ``synthesize``) or the chunk completing
  the first sentence (streamed, words every 30 ms as an LLM sends them) -> first
  ``audio-chunk``, minus the fake's first-byte time for that request; the largest playback
  gap of a 4-sentence streamed reply when the client plays in real time from its first
  chunk, the fake at a slow pace (first byte 400 ms, generation at real time);
- 1, 10 and 50 simultaneous STT clients: wait, bridge share, server CPU milliseconds per
  second of audio (0.5 % of a core = 5 ms/s), peak RSS; next to it, what only receiving
  the same streams costs a do-nothing asyncio server and one that reads the events with
  ``wyoming``'s own reader (``benchmarks/cpu_floor.py``): the floor of any Wyoming server
  written in Python on this machine;
- start-up (process start -> first ``describe`` answered) and idle RSS;
- the web face (``WS /v1/transcriptions``, a server process of its own with the web face
  on; "-" rows for a server without one): the server's ``latency_ms`` from the detector's
  end of speech to the ``final`` of a command streamed in real time (20 ms frames, then
  room noise until the final) with a backend that finalizes in 150 ms and in 450 ms, and
  the client's view of it (from sending the audio where speech ended plus
  ``stt.early_transcript_silence`` to the final's arrival); how long after the fake sent a
  transcription ``delta`` the client got its ``partial``; server CPU milliseconds per
  second of audio for 20 WebSocket sessions of 10 s against 20 Wyoming streams of the same
  audio on the same process, and their ratio.
- the local engines (no key, in this process; ``benchmarks/local_engines.py``): ``audio-stop``
  -> transcript of commands streamed in real time, a reply's first sentence -> first audio,
  WER speculative vs at ``audio-stop``; upstream sessions and fds left after 100 rejected
  utterances.

Run: ``script/bench`` (``--help`` for options). ``--server-root DIR`` runs the server from
another checkout (e.g. an older commit) to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import jiwer  # noqa: E402
import numpy as np  # noqa: E402
from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.tts import (  # noqa: E402
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from benchmarks import local_engines, real_speech, warm_speech  # noqa: E402
from benchmarks.cpu_floor import cpu_seconds, floors, free_port  # noqa: E402
from benchmarks.http_speech import http_speech  # noqa: E402
from benchmarks.http_transcriptions import http_section  # noqa: E402
from tests import speech  # noqa: E402
from tests.fake_openai import DEFAULT_API_KEY, FakeOpenAI, RealtimeSessionRecord  # noqa: E402
from tests.utterances import COMMANDS, RATE, command, room_noise, sound_bounds, spoken  # noqa: E402
from wyoming_openai.audio import PCM_24K_MONO, AudioFormat  # noqa: E402
from wyoming_openai.config import SttSettings  # noqa: E402
from wyoming_openai.resample import AudioConverter  # noqa: E402

CHUNK_MS = 10
TTS_FIRST_BYTE = 0.4  # s
TTS_REALTIME_BYTES = 4800  # per 0.1 s: 48,000 bytes/s, real time at 24 kHz s16
REPLY = [
    "The front door is locked and the alarm is on.",
    "The kitchen lights are off.",
    "It is twenty one degrees inside.",
    "Tomorrow will be sunny.",
]
WORD_INTERVAL = 0.03  # s between streamed words (about what an LLM sends)
WEB_FRAME_MS = 20  # a browser's AudioWorklet batches about this much per message
WEB_TAIL_SECONDS = 3.0  # room noise streamed after a command, until its final arrives
DETECTOR_SILENCE = float(SttSettings.model_fields["early_transcript_silence"].default)
"""Seconds of non-speech after which the server ends an utterance (this checkout's
default of ``stt.early_transcript_silence``; the web face uses it to cut utterances)."""
LOAD_SESSIONS = 20
LOAD_SECONDS = 10.0  # audio per session of the CPU rows
DELTA = "conversation.item.input_audio_transcription.delta"


# ------------------------------------------------------------------------------ helpers


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class Table:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, name: str, values: Sequence[float], unit: str = "ms") -> None:
        if not values:
            self.rows.append((name, "-", "-", unit))
            return
        self.rows.append((name, f"{statistics.median(values):.1f}", f"{pct(values, 95):.1f}", unit))

    def one(self, name: str, value: float, unit: str) -> None:
        self.rows.append((name, f"{value:.1f}", "", unit))

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows) + 2
        print(f"{'measurement':<{width}} {'median':>9} {'p95':>9}  unit")
        for name, median, p95, unit in self.rows:
            print(f"{name:<{width}} {median:>9} {p95:>9}  {unit}")


def _has_web_face(root: Path) -> bool:
    """Whether the server in ``root`` has a web face (``--no-web``)."""
    return (root / "wyoming_openai" / "web").is_dir()


class ServerProcess:
    """``python -m wyoming_openai`` from ``root`` in a child process."""

    def __init__(
        self,
        root: Path,
        base_url: str,
        args: Sequence[str],
        env: dict[str, str],
        web: bool = False,
    ):
        self.port = free_port()
        self.web_port: int | None = None
        """Port of the web face (``web`` asked for and the server has one), else None."""
        command_line = [
            sys.executable,
            "-m",
            "wyoming_openai",
            "--uri",
            f"tcp://127.0.0.1:{self.port}",
            "--no-zeroconf",
            "--fallback",
            "none",
            "--openai-base-url",
            base_url,
            "--log-level",
            "WARNING",
            *args,
        ]
        if _has_web_face(root) and web:
            self.web_port = free_port()
            command_line += ["--web-uri", f"http://127.0.0.1:{self.web_port}"]
        elif _has_web_face(root):  # measure the Wyoming side alone, as before the web face
            command_line.append("--no-web")
        full_env = {**os.environ, "OPENAI_API_KEY": DEFAULT_API_KEY, **env}
        full_env["PYTHONPATH"] = str(root)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(command_line, cwd=root, env=full_env)
        self.startup = float("nan")

    async def wait_ready(self) -> float:
        """Seconds from process start to the first answered ``describe``."""
        while True:
            try:
                async with AsyncTcpClient("127.0.0.1", self.port) as client:
                    await client.write_event(Describe().event())
                    while True:
                        event = await asyncio.wait_for(client.read_event(), 10)
                        if event is None or Info.is_type(event.type):
                            break
                self.startup = time.monotonic() - self.started
                return self.startup
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("server exited during start-up") from None
                await asyncio.sleep(0.005)

    async def wait_web_ready(self) -> None:
        """Until the web face's ``/healthz`` answers 200 (no-op without a web face)."""
        if self.web_port is None:
            return
        url = f"http://127.0.0.1:{self.web_port}/healthz"
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.02)
        raise RuntimeError("the web face did not become ready")

    @property
    def ws_url(self) -> str:
        """``WS /v1/transcriptions`` of the web face."""
        return f"ws://127.0.0.1:{self.web_port}/v1/transcriptions"

    def cpu(self) -> float:
        """CPU seconds (user + system) used so far."""
        return cpu_seconds(self.proc.pid)

    def rss_mb(self, key: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    async def stop(self) -> None:
        self.proc.terminate()
        await asyncio.to_thread(self.proc.wait, 10)


# ------------------------------------------------------------------------------ clients


@dataclass
class SttRun:
    audio_start_at: float = 0.0
    audio_stop_at: float = 0.0
    transcript_at: float = 0.0
    text: str = ""


async def ha_transcribe(
    port: int,
    pcm: bytes,
    *,
    rate: int = 16000,
    realtime: bool = True,
    names: list[str] | None = None,
) -> SttRun:
    """Home Assistant's STT order, timestamped: ``transcribe``, ``audio-start``, 10 ms
    chunks (paced in real time), ``audio-stop``; reads concurrently until ``transcript``."""
    run = SttRun()
    size = rate * CHUNK_MS // 1000 * 2
    async with AsyncTcpClient("127.0.0.1", port) as client:

        async def read() -> None:
            while True:
                event = await client.read_event()
                if event is None:
                    raise RuntimeError("connection closed before the transcript")
                if Transcript.is_type(event.type):
                    run.transcript_at = time.monotonic()
                    run.text = Transcript.from_event(event).text
                    return
                if event.type == "error":
                    raise RuntimeError(f"error: {event.data}")

        reader = asyncio.create_task(read())
        await client.write_event(Transcribe(language="en", transcript_names=names).event())
        run.audio_start_at = time.monotonic()
        await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
        for index, start in enumerate(range(0, len(pcm), size)):
            chunk = AudioChunk(rate=rate, width=2, channels=1, audio=pcm[start : start + size])
            await client.write_event(chunk.event())
            if realtime:
                delay = run.audio_start_at + (index + 1) * CHUNK_MS / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        run.audio_stop_at = time.monotonic()
        await client.write_event(AudioStop().event())
        await asyncio.wait_for(reader, 30)
    return run


def used_session(
    fake: FakeOpenAI, run: SttRun, name: str | None = None
) -> RealtimeSessionRecord | None:
    """The upstream session that transcribed ``run`` (the one tagged ``name``, if given)."""
    for session in reversed(fake.realtime_sessions):
        if not session.commits or session.first_audio_at is None:
            continue
        if name is not None:
            config = session.session_config or {}
            keywords = config.get("audio", {}).get("input", {}).get("transcription", {})
            if name in (keywords.get("keywords") or []):
                return session
        elif session.first_audio_at >= run.audio_start_at:
            return session
    return None


def bridge_share(run: SttRun, session: RealtimeSessionRecord) -> float:
    """Seconds of ``audio-stop`` -> ``transcript`` spent outside the fake."""
    forward = max(0.0, session.commit_times[-1] - run.audio_stop_at)
    done = session.completed_times[-1] if session.completed_times else run.audio_stop_at
    return forward + (run.transcript_at - max(run.audio_stop_at, done))


@dataclass
class TtsRun:
    started_at: float = 0.0
    first_sentence_at: float = 0.0
    first_audio_at: float | None = None
    chunks: list[tuple[float, int]] = field(default_factory=list)  # (arrival, bytes)

    def largest_gap(self) -> float:
        """Longest silence (s) while playing in real time from the first chunk."""
        if not self.chunks:
            return float("nan")
        play_end = self.chunks[0][0]
        gap = 0.0
        for arrival, size in self.chunks:
            start = max(play_end, arrival)
            gap = max(gap, start - play_end)
            play_end = start + PCM_24K_MONO.duration_ms(size) / 1000
        return gap


async def read_tts(client: AsyncTcpClient, run: TtsRun, until: str) -> None:
    while True:
        event = await asyncio.wait_for(client.read_event(), 30)
        if event is None:
            raise RuntimeError("connection closed during synthesis")
        if event.type == "error":
            raise RuntimeError(f"error: {event.data}")
        if AudioChunk.is_type(event.type):
            now = time.monotonic()
            run.first_audio_at = run.first_audio_at or now
            run.chunks.append((now, len(event.payload or b"")))
        if event.type == until:
            return


async def tts_plain(port: int, text: str) -> TtsRun:
    run = TtsRun()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        run.started_at = run.first_sentence_at = time.monotonic()
        await client.write_event(Synthesize(text=text).event())
        await read_tts(client, run, AudioStop().event().type)
    return run


async def tts_stream(port: int, sentences: list[str]) -> TtsRun:
    """Streamed as an LLM sends it: one ``synthesize-chunk`` per word, 30 ms apart."""
    words = " ".join(sentences).split(" ")
    deltas = [words[0]] + [" " + word for word in words[1:]]
    first_end = len(sentences[0].split(" ")) - 1
    run = TtsRun()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        reader = asyncio.create_task(read_tts(client, run, SynthesizeStopped().event().type))
        run.started_at = time.monotonic()
        await client.write_event(SynthesizeStart().event())
        for index, delta in enumerate(deltas):
            await client.write_event(SynthesizeChunk(text=delta).event())
            if index == first_end:
                run.first_sentence_at = time.monotonic()
            await asyncio.sleep(WORD_INTERVAL)
        await client.write_event(Synthesize(text="".join(deltas)).event())
        await client.write_event(SynthesizeStop().event())
        await reader
    return run


def first_byte_time(fake: FakeOpenAI, text: str, after: float) -> float:
    """The fake's time from receiving the request for ``text`` to its first byte (s)."""
    for record in fake.speech_streams:
        if (
            record.request.get("input") == text
            and record.started_at >= after
            and record.first_byte_at is not None
        ):
            return record.first_byte_at - record.started_at
    return float("nan")


@dataclass
class WebRun:
    """One ``WS /v1/transcriptions`` session as the client saw it (``time.monotonic()``)."""

    started_at: float = 0.0  # the first frame's audio began (the clock the frames follow)
    sent_at: list[float] = field(default_factory=list)  # each frame sent
    stop_at: float = 0.0  # ``{"action": "stop"}`` sent
    partials: list[tuple[float, str]] = field(default_factory=list)  # (arrival, text)
    finals: list[tuple[float, str, float]] = field(default_factory=list)  # (arrival, text, ms)

    def sent_by(self, offset: int) -> float:
        """When the client had sent the audio up to byte ``offset`` (the schedule's time,
        if it stopped streaming before)."""
        index = max(0, -(-offset // frame_bytes()) - 1)
        if index < len(self.sent_at):
            return self.sent_at[index]
        return self.started_at + (index + 1) * WEB_FRAME_MS / 1000


def frame_bytes() -> int:
    """Bytes of one web frame of 16 kHz s16le mono."""
    return RATE * WEB_FRAME_MS // 1000 * 2


async def web_stream(
    session: aiohttp.ClientSession, url: str, pcm: bytes, *, until_final: bool
) -> WebRun:
    """A browser's live transcription: ``start`` (pcm16, 16 kHz), 20 ms frames paced by the
    clock (each sent once its 20 ms were captured), reading concurrently; streaming ends
    when the audio does or, with ``until_final``, once a final arrived; then ``stop``, and
    the answers are read until ``{"stopped": true}``."""
    run = WebRun()
    size = frame_bytes()
    async with session.ws_connect(url) as ws:
        await ws.send_json({"action": "start", "format": "pcm16", "rate": RATE})
        opened = await asyncio.wait_for(ws.receive_json(), 10)
        if "session_id" not in opened:
            raise RuntimeError(f"web session refused: {opened}")

        async def read() -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                now, data = time.monotonic(), message.json()
                if "partial" in data:
                    run.partials.append((now, data["partial"]))
                elif "final" in data:
                    run.finals.append((now, data["final"], float(data["latency_ms"])))
                elif "error" in data:
                    raise RuntimeError(f"error: {data}")
                elif data.get("stopped"):
                    return

        reader = asyncio.create_task(read())
        run.started_at = time.monotonic()
        for index, start in enumerate(range(0, len(pcm), size)):
            if until_final and run.finals:
                break
            delay = run.started_at + (index + 1) * WEB_FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send_bytes(pcm[start : start + size])
            run.sent_at.append(time.monotonic())
        run.stop_at = time.monotonic()
        await ws.send_json({"action": "stop"})
        await asyncio.wait_for(reader, 30)
    return run


def delta_times(fake: FakeOpenAI, run: WebRun) -> list[tuple[float, str]]:
    """(send time, text) of every transcription delta the fake sent for ``run`` (the
    upstream sessions whose audio began during it), in the order sent."""
    found = []
    for record in list(fake.realtime_sessions):
        if record.first_audio_at is None or not (
            run.started_at <= record.first_audio_at <= run.stop_at
        ):
            continue
        for event, sent in zip(record.server_events, record.server_event_times, strict=False):
            if event.get("type") == DELTA:
                found.append((sent, str(event.get("delta", ""))))
    return sorted(found)


def partial_delays(fake: FakeOpenAI, run: WebRun) -> list[float]:
    """Seconds from the fake sending each delta to the client receiving its partial: the
    n-th partial answers the n-th delta (each delta adds words to the partial)."""
    delays = []
    for (arrival, text), (sent, delta) in zip(run.partials, delta_times(fake, run), strict=False):
        if delta.strip() and text.endswith(delta.strip()):
            delays.append(arrival - sent)
    return delays


def load_audio(index: int, seconds: float = LOAD_SECONDS) -> bytes:
    """``seconds`` of dictation: commands of the corpus 1 s apart (each ends an utterance
    on the web face), then room noise up to ``seconds``."""
    parts: list[str | float] = []
    length = 0.2 + 0.7
    step = 0
    while True:
        text = COMMANDS[(index + step) % len(COMMANDS)]
        added = len(spoken(text)) / 2 / RATE + (1.0 if parts else 0.0)
        if length + added > seconds:
            break
        parts += [1.0, text] if parts else [text]
        length += added
        step += 1
    pcm = command(*parts, seed=index)
    missing = int(seconds * RATE) * 2 - len(pcm)
    return pcm + room_noise(missing / 2 / RATE, seed=index + 7) if missing > 0 else pcm


# ------------------------------------------------------------------------------ sections


def to_24k(pcm16k: bytes) -> bytes:
    converter = AudioConverter(AudioFormat(16000, 2, 1), PCM_24K_MONO)
    return converter.convert(pcm16k) + converter.flush()


async def stt_latency(
    table: Table, fake: FakeOpenAI, port: int, label: str, runs: int, first_audio: bool
) -> None:
    waits, shares, starts = [], [], []
    for index in range(runs):
        pcm = command(COMMANDS[index % len(COMMANDS)], seed=index)
        run = await ha_transcribe(port, pcm)
        session = used_session(fake, run)
        waits.append((run.transcript_at - run.audio_stop_at) * 1000)
        if session is not None:
            shares.append(bridge_share(run, session) * 1000)
            if session.first_audio_at is not None:
                starts.append((session.first_audio_at - run.audio_start_at) * 1000)
        await asyncio.sleep(0.05)  # the spare session is replaced
    table.add(f"STT audio-stop -> transcript ({label})", waits)
    table.add("  bridge's own share", shares)
    if first_audio:
        table.add("STT audio-start -> first audio at fake (16 kHz)", starts)


async def stt_first_audio_24k(table: Table, fake: FakeOpenAI, port: int, runs: int) -> None:
    starts = []
    for index in range(runs):
        pcm = to_24k(command(COMMANDS[index % len(COMMANDS)], seed=index))
        run = await ha_transcribe(port, pcm, rate=24000)
        session = used_session(fake, run)
        if session is not None and session.first_audio_at is not None:
            starts.append((session.first_audio_at - run.audio_start_at) * 1000)
        await asyncio.sleep(0.05)
    table.add("STT audio-start -> first audio at fake (24 kHz)", starts)


WER_NOISE_SEEDS = (0, 100, 200, 300)
"""Room-noise renditions of each command for the WER rows (30 commands x 4 = 120): with
one rendition, Whisper tiny.en's flips on single words ("play" / "place") move the rate
by 0.5 points either way."""


async def wer(fake: FakeOpenAI, port: int) -> float:
    """Word error rate (%) of the corpus in every room-noise rendition, Whisper in the fake."""
    saved = fake.transcriber, fake.finalize_delay
    fake.transcriber = speech.whisper_transcriber
    fake.finalize_delay = 0.0
    references, hypotheses = [], []
    try:
        for seed in WER_NOISE_SEEDS:
            for index, text in enumerate(COMMANDS):
                pcm = command(text, seed=seed + index)
                run = await ha_transcribe(port, pcm, realtime=False)
                references.append(speech.normalize_text(text))
                hypotheses.append(speech.normalize_text(run.text) or "<empty>")
    finally:
        fake.transcriber, fake.finalize_delay = saved
    return 100 * float(jiwer.wer(references, hypotheses))


async def tts(table: Table, fake: FakeOpenAI, port: int, runs: int) -> None:
    fake.tts_first_byte_delay = TTS_FIRST_BYTE
    fake.tts_chunk_bytes = TTS_REALTIME_BYTES
    fake.tts_chunk_interval = 0.1
    plain, streamed, gaps = [], [], []
    for _ in range(runs):
        run = await tts_plain(port, REPLY[1])
        assert run.first_audio_at is not None
        upstream = first_byte_time(fake, REPLY[1], run.started_at)
        plain.append((run.first_audio_at - run.started_at - upstream) * 1000)
    for _ in range(max(3, runs // 2)):
        run = await tts_stream(port, REPLY)
        assert run.first_audio_at is not None
        upstream = first_byte_time(fake, REPLY[0], run.started_at)
        streamed.append((run.first_audio_at - run.first_sentence_at - upstream) * 1000)
        gaps.append(run.largest_gap() * 1000)
    table.add("TTS synthesize -> first audio, minus fake's first byte", plain)
    table.add("TTS first sentence streamed -> first audio, minus first byte", streamed)
    table.add("TTS largest playback gap, 4 sentences, slow backend", gaps)


async def scaling(table: Table, fake: FakeOpenAI, server: ServerProcess, clients: int) -> None:
    names = [f"client{i}" for i in range(clients)]
    audio = [command(COMMANDS[i % len(COMMANDS)], seed=i) for i in range(clients)]
    seconds = sum(len(pcm) for pcm in audio) / 32000
    peak = server.rss_mb()
    cpu_before = server.cpu()
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, server.rss_mb())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    runs = await asyncio.gather(
        *(
            ha_transcribe(server.port, pcm, names=[name])
            for pcm, name in zip(audio, names, strict=True)
        )
    )
    sampling = False
    await sampler
    cpu = server.cpu() - cpu_before
    waits, shares = [], []
    for run, name in zip(runs, names, strict=True):
        waits.append((run.transcript_at - run.audio_stop_at) * 1000)
        session = used_session(fake, run, name)
        if session is not None:
            shares.append(bridge_share(run, session) * 1000)
    table.add(f"{clients:>2} clients: audio-stop -> transcript (150 ms)", waits)
    table.add(f"{clients:>2} clients: bridge's own share", shares)
    table.one(f"{clients:>2} clients: server CPU per second of audio", cpu / seconds * 1000, "ms/s")
    table.one(f"{clients:>2} clients: server peak RSS", peak, "MB")
    await asyncio.sleep(0.3)


LEAD_BYTES = int(0.2 * RATE) * 2
"""Room noise before the speech of :func:`tests.utterances.command` (its default lead)."""


async def web_latency(
    table: Table, fake: FakeOpenAI, server: ServerProcess, label: str, runs: int
) -> list[float]:
    """End of speech -> final, as the server reports it and as the client sees it (the
    speech ends where Piper's last sound does, :func:`tests.utterances.sound_bounds`);
    returns the partials' forwarding delays (s) of these runs."""
    server_ms, client_ms, forwarded = [], [], []
    async with aiohttp.ClientSession() as session:
        for index in range(runs):
            text = COMMANDS[index % len(COMMANDS)]
            pcm = command(text, tail_seconds=WEB_TAIL_SECONDS, seed=index)
            run = await web_stream(session, server.ws_url, pcm, until_final=True)
            forwarded += partial_delays(fake, run)
            if run.finals and run.finals[0][0] <= run.stop_at:  # else the end was missed
                arrival, _text, latency = run.finals[0]
                server_ms.append(latency)
                speech_end = LEAD_BYTES + sound_bounds(spoken(text))[1]
                heard = speech_end + int(DETECTOR_SILENCE * RATE) * 2
                client_ms.append((arrival - run.sent_by(heard)) * 1000)
            await asyncio.sleep(0.05)  # the spare session is replaced
    table.add(f"web: end of speech -> final ({label})", server_ms)
    table.add(f"  client: speech end + {DETECTOR_SILENCE:g} s sent -> final", client_ms)
    return forwarded


async def cpu_per_audio_second(
    server: ServerProcess, streams: Awaitable[object], seconds: float
) -> float:
    """Server CPU milliseconds per second of audio while ``streams`` run."""
    before = server.cpu()
    await streams
    return (server.cpu() - before) / seconds * 1000


async def web_cpu(table: Table, server: ServerProcess) -> None:
    """20 Wyoming streams, then 20 WebSocket sessions, of the same 10 s each, real time."""
    audio = [load_audio(i) for i in range(LOAD_SESSIONS)]
    seconds = sum(len(pcm) for pcm in audio) / 2 / RATE
    names = [f"load{i}" for i in range(LOAD_SESSIONS)]
    streams = (
        ha_transcribe(server.port, pcm, names=[name])
        for pcm, name in zip(audio, names, strict=True)
    )
    wyoming = await cpu_per_audio_second(server, asyncio.gather(*streams), seconds)
    table.one(f"wyoming: CPU per second of audio, {LOAD_SESSIONS} streams", wyoming, "ms/s")
    if server.web_port is None:
        table.add(f"web: CPU per second of audio, {LOAD_SESSIONS} sessions", [], "ms/s")
        table.add("  web / wyoming", [], "x")
        return
    await asyncio.sleep(0.5)
    async with aiohttp.ClientSession() as session:
        web = await cpu_per_audio_second(
            server,
            asyncio.gather(
                *(web_stream(session, server.ws_url, pcm, until_final=False) for pcm in audio)
            ),
            seconds,
        )
    table.one(f"web: CPU per second of audio, {LOAD_SESSIONS} sessions", web, "ms/s")
    table.one("  web / wyoming", web / wyoming if wyoming else float("nan"), "x")


async def web_section(table: Table, fake: FakeOpenAI, server: ServerProcess, runs: int) -> None:
    """The web face's rows ("-" for a server without one, but the Wyoming CPU row)."""
    await asyncio.sleep(1.0)  # warm session opened, start-up settled
    forwarded: dict[str, list[float]] = {}
    for delay in (0.15, 0.45):
        label = f"fake finalize {delay * 1000:.0f} ms"
        if server.web_port is None:
            table.add(f"web: end of speech -> final ({label})", [])
            table.add(f"  client: speech end + {DETECTOR_SILENCE:g} s sent -> final", [])
            forwarded[label] = []
            continue
        fake.finalize_delay = delay
        forwarded[label] = [d * 1000 for d in await web_latency(table, fake, server, label, runs)]
    every = [d for delays in forwarded.values() for d in delays]
    table.add("web: partial forwarded after the fake sent its delta", every)
    for label, delays in forwarded.items():
        table.add(f"  {label}", delays)
    fake.finalize_delay = 0.15
    await web_cpu(table, server)


# ------------------------------------------------------------------------------ main


async def with_server(
    fake: FakeOpenAI,
    args: argparse.Namespace,
    env: dict[str, str],
    body: Callable[[ServerProcess], Awaitable[None]],
    web: bool = False,
) -> ServerProcess:
    server = ServerProcess(
        Path(args.server_root), fake.base_url, args.server_args.split(), env, web=web
    )
    try:
        await server.wait_ready()
        await server.wait_web_ready()
        await body(server)
    finally:
        await server.stop()
    return server


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per latency row")
    parser.add_argument("--server-root", default=str(ROOT), help="checkout to run the server from")
    parser.add_argument(
        "--server-args", default="", help="extra server flags, e.g. '--tts-lookahead 2'"
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated sections to skip: stt,wer,tts,scale,web,http,warm,outage,local,real",
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    table = Table()
    startups: list[float] = []
    idle: list[float] = []
    wers: dict[str, float] = {}
    fake = FakeOpenAI(finalize_delay=0.15)
    await fake.start()
    try:

        async def speculative(server: ServerProcess) -> None:
            await asyncio.sleep(1.0)  # warm session opened, start-up settled
            idle.append(server.rss_mb())
            if "stt" not in skip:
                fake.finalize_delay = 0.15
                await stt_latency(table, fake, server.port, "150 ms, speculative", args.runs, True)
                await stt_first_audio_24k(table, fake, server.port, max(5, args.runs // 2))
                fake.finalize_delay = 0.45
                await stt_latency(table, fake, server.port, "450 ms, speculative", args.runs, False)
            if "wer" not in skip:
                wers["speculative commit"] = await wer(fake, server.port)
            if "tts" not in skip:
                await tts(table, fake, server.port, args.runs)
            if "scale" not in skip:
                fake.finalize_delay = 0.15
                for clients in (1, 10, 50):
                    await scaling(table, fake, server, clients)
                for clients in (1, 50):
                    for label, value in (await floors(5.0, clients)).items():
                        table.one(f"{clients:>2} clients: floor, {label}", value, "ms/s")

        async def at_stop(server: ServerProcess) -> None:
            await asyncio.sleep(0.5)
            if "stt" not in skip:
                fake.finalize_delay = 0.15
                await stt_latency(table, fake, server.port, "150 ms, at stop", args.runs, False)
                fake.finalize_delay = 0.45
                await stt_latency(table, fake, server.port, "450 ms, at stop", args.runs, False)
            if "wer" not in skip:
                wers["commit at audio-stop"] = await wer(fake, server.port)

        first = await with_server(fake, args, {}, speculative)
        startups.append(first.startup)
        off = {"WYOMING_OPENAI_STT_SPECULATIVE_COMMIT": "false"}
        second = await with_server(fake, args, off, at_stop)
        startups.append(second.startup)
        for _ in range(3):
            startups.append((await with_server(fake, args, {}, _nothing)).startup)
        if "real" not in skip:
            await real_speech.section(table, fake, args, with_server)
        if "web" not in skip:

            async def web_face(server: ServerProcess) -> None:
                await web_section(table, fake, server, args.runs)

            await with_server(fake, args, {}, web_face, web=True)
        if "http" not in skip:
            speech_rows = partial(http_speech, table, fake, runs=args.runs)
            await with_server(fake, args, {}, speech_rows, web=True)
            transcription_rows = partial(http_section, table, fake, runs=args.runs)
            await with_server(fake, args, {}, transcription_rows, web=True)
        if "warm" not in skip:
            await warm_speech.section(table, fake, args.server_root, args.runs)
        if "outage" not in skip:
            from benchmarks.outages import outage_rows  # it imports this module

            await outage_rows(table, args)
        if "local" not in skip:  # in this process: no key, local engines (issue 14)
            await local_engines.section(table, args.runs)
    finally:
        await fake.stop()

    for name, value in wers.items():
        table.one(
            f"WER of {len(COMMANDS)} commands x {len(WER_NOISE_SEEDS)} noises, {name}", value, "%"
        )
    table.add("start-up: process start -> first describe answered", [s * 1000 for s in startups])
    table.one("RSS idle (after start-up, one warm session)", statistics.median(idle), "MB")
    print(
        f"runs={args.runs}; server from {args.server_root} {args.server_args}; "
        f"TTS first byte {TTS_FIRST_BYTE * 1000:.0f} ms, generation at real time"
    )
    table.print()


async def _nothing(server: ServerProcess) -> None:
    del server


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
