"""Latency benchmark: the real server against the fake OpenAI server on 127.0.0.1.

Reports, over many runs (median and p95, milliseconds):

- STT ``audio-stop`` -> ``transcript`` (what the user waits for after they stop), and the
  bridge's own share of it (minus the fake's fixed finalize delay);
- TTS request -> first ``audio-chunk``, and the bridge's share (minus the fake's fixed
  first-byte delay).

Run: ``script/bench`` (arguments pass through; ``--help`` lists them).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from tests.fake_openai import FakeOpenAI
from tests.harness import ha_synthesize, ha_transcribe, make_settings, running_server


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def row(name: str, values_ms: list[float]) -> str:
    return (
        f"{name:<44} {statistics.median(values_ms):>9.1f} {percentile(values_ms, 95):>9.1f}"
        f" {min(values_ms):>9.1f} {max(values_ms):>9.1f}"
    )


def speech_like(seconds: float, rate: int = 16000) -> bytes:
    """Noise-modulated tones standing in for speech (the fake's transcriber ignores it)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    signal += 0.01 * rng.standard_normal(len(t))
    return (signal * 32767 * 0.5).astype("<i2").tobytes()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per measurement")
    parser.add_argument("--finalize-ms", type=float, default=200, help="fake finalize delay")
    parser.add_argument("--tts-first-byte-ms", type=float, default=150, help="fake TTS delay")
    parser.add_argument("--speech-seconds", type=float, default=1.5, help="utterance length")
    parser.add_argument(
        "--realtime", action="store_true", help="pace audio in real time (slower, realistic)"
    )
    args = parser.parse_args()

    fake = FakeOpenAI(
        finalize_delay=args.finalize_ms / 1000, tts_first_byte_delay=args.tts_first_byte_ms / 1000
    )
    await fake.start()
    try:
        async with running_server(make_settings(fake.base_url)) as server:
            assert server.port is not None
            port = server.port
            audio = speech_like(args.speech_seconds)
            stt_ms: list[float] = []
            for _ in range(args.runs):
                result = await ha_transcribe(port, audio, realtime=args.realtime)
                assert result.transcript_at is not None, result.types
                stt_ms.append((result.transcript_at - result.audio_stop_at) * 1000)
            tts_ms: list[float] = []
            for _ in range(args.runs):
                tts = await ha_synthesize(port, "The front door is locked.")
                assert tts.first_audio_at is not None, tts.types
                tts_ms.append((tts.first_audio_at - tts.started_at) * 1000)
    finally:
        await fake.stop()

    print(
        f"runs={args.runs} finalize={args.finalize_ms:.0f} ms "
        f"tts_first_byte={args.tts_first_byte_ms:.0f} ms realtime={args.realtime}"
    )
    print(f"{'measurement (ms)':<44} {'median':>9} {'p95':>9} {'min':>9} {'max':>9}")
    print(row("STT audio-stop -> transcript", stt_ms))
    print(row("  bridge share (minus finalize delay)", [v - args.finalize_ms for v in stt_ms]))
    print(row("TTS synthesize -> first audio-chunk", tts_ms))
    print(
        row("  bridge share (minus first-byte delay)", [v - args.tts_first_byte_ms for v in tts_ms])
    )


if __name__ == "__main__":
    asyncio.run(main())
