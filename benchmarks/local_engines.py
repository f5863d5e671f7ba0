"""Local engines benchmark: what a user waits for when faster-whisper and Piper serve.

Runs the real server on 127.0.0.1, driven as Home Assistant drives it, and reports (median,
p95, min, max; milliseconds):

- local STT (no API key): ``audio-stop`` -> ``transcript`` for real Piper speech;
- local STT as a fallback while the fake OpenAI refuses connections (503), and while it
  hangs with ``--openai-timeout``/``--openai-connect-timeout`` deadlines (the deadline is
  paid once; later utterances go straight to the local engine during the hold, so only the
  first run of each server pays it: each run here uses a fresh server);
- local TTS (Piper at 22,050 Hz): streamed request -> first ``audio-chunk``;
- TTS fallback (Piper resampled to 24 kHz) while OpenAI refuses connections;
- start-up: loading both models.

Run: ``.venv/bin/python benchmarks/local_engines.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from tests import speech
from tests.fake_openai import FakeOpenAI
from tests.harness import ha_synthesize_stream, ha_transcribe, make_settings, running_server
from wyoming_openai.audio import AudioFormat
from wyoming_openai.config import Settings
from wyoming_openai.config_sources import load_settings
from wyoming_openai.resample import AudioConverter

TEXTS = [
    "Turn on the kitchen lights.",
    "What is the weather like tomorrow?",
    "Lock the front door and close the garage.",
]
REPLY = ["The garage door ", "is open. Shall I ", "close it?"]


def row(name: str, values_ms: list[float]) -> str:
    return (
        f"{name:<52} {statistics.median(values_ms):>8.1f} {np.percentile(values_ms, 95):>8.1f}"
        f" {min(values_ms):>8.1f} {max(values_ms):>8.1f}"
    )


def piper_16k(text: str) -> bytes:
    pcm, rate = speech.synthesize_speech(text)
    converter = AudioConverter(AudioFormat(rate, 2, 1), AudioFormat(16000, 2, 1))
    return converter.convert(pcm) + converter.flush()


async def stt_ms(settings: Settings, runs: int, audio: list[bytes], fresh: bool) -> list[float]:
    """``audio-stop`` -> ``transcript`` per run; ``fresh``: a new server per run."""
    times: list[float] = []
    if fresh:
        for index in range(runs):
            async with running_server(settings) as server:
                assert server.port is not None
                result = await ha_transcribe(server.port, audio[index % len(audio)])
            assert result.transcript_at is not None, result.error
            times.append(1000 * (result.transcript_at - result.audio_stop_at))
        return times
    async with running_server(settings) as server:
        assert server.port is not None
        for index in range(runs):
            result = await ha_transcribe(server.port, audio[index % len(audio)])
            assert result.transcript_at is not None, result.error
            times.append(1000 * (result.transcript_at - result.audio_stop_at))
    return times


async def tts_ms(settings: Settings, runs: int) -> list[float]:
    times: list[float] = []
    async with running_server(settings) as server:
        assert server.port is not None
        for _ in range(runs):
            result = await ha_synthesize_stream(server.port, REPLY)
            assert result.first_audio_at is not None, result.error
            times.append(1000 * (result.first_audio_at - result.started_at))
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per measurement")
    parser.add_argument("--timeout", type=float, default=1.0, help="OpenAI deadlines, s")
    args = parser.parse_args()
    audio = [piper_16k(text) for text in TEXTS]
    local = load_settings(["--uri", "tcp://127.0.0.1:0", "--no-zeroconf"], {})

    started = time.monotonic()
    async with running_server(local):
        load_ms = 1000 * (time.monotonic() - started)

    print(f"{'milliseconds':<52} {'median':>8} {'p95':>8} {'min':>8} {'max':>8}")
    print(f"{'start-up with both models (first load in process)':<52} {load_ms:>8.1f}")
    print(row("local STT: audio-stop -> transcript", await stt_ms(local, args.runs, audio, False)))
    print(row("local TTS (stream): request -> first audio", await tts_ms(local, args.runs)))

    async with FakeOpenAI(reject_connections=True) as fake:
        deadlines = ("--openai-max-retries", "0", "--tts-mode", "speech")
        refused = make_settings(fake.base_url, "--fallback", "local", *deadlines)
        print(
            row(
                "fallback STT, OpenAI refuses: audio-stop -> transcript",
                await stt_ms(refused, args.runs, audio, True),
            )
        )
        print(row("fallback TTS, OpenAI refuses: -> first audio", await tts_ms(refused, args.runs)))
    async with FakeOpenAI(hang=True) as fake:
        timeout = str(args.timeout)
        hanging = make_settings(
            fake.base_url,
            "--fallback",
            "local",
            "--openai-max-retries",
            "0",
            "--openai-timeout",
            timeout,
            "--openai-connect-timeout",
            timeout,
        )
        print(
            row(
                f"fallback STT, OpenAI hangs ({timeout} s deadline), first utterance",
                await stt_ms(hanging, max(3, args.runs // 3), audio, True),
            )
        )
        print(
            row(
                "fallback STT, OpenAI hangs, later utterances (hold)",
                await stt_ms(hanging, args.runs, audio, False),
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
