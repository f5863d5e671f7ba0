"""Real voices (``script/bench``, skip key ``real``): recordings of people, not Piper.

Clips from ``benchmarks/recordings.py`` (``script/fetch-recordings``; the rows are "-" when
they were not fetched). Each is sent as Home Assistant sends a command: the recording up to
its last sound (``recordings.last_sound``) and then 0.7 s of what follows it in the
recording (its own breath, reverb and room), padded with -60 dBFS room noise where the
recording is shorter; then ``audio-stop``. Rows:

- last sound -> the detector's end of speech (``wyoming_openai.vad``, the detector of the
  speculative commit, fed in 10 ms chunks at 24 kHz as the realtime session feeds it): the
  last end it reports; and how many ends it reported before the last sound (pauses inside
  the clip);
- ``audio-stop`` -> ``transcript`` with the fake finalizing 450 and 150 ms after a commit
  (speculative commit on, the default), paced in real time;
- WER of the clips (Whisper tiny.en in the fake), speculative commit vs commit at
  ``audio-stop``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import jiwer
import numpy as np

from benchmarks import recordings

if TYPE_CHECKING:
    from benchmarks.latency import ServerProcess, Table
    from tests.fake_openai import FakeOpenAI

TAIL_SECONDS = 0.7
"""Home Assistant's silence before ``audio-stop``."""

WithServer = Callable[..., Awaitable["ServerProcess"]]


def utterance(clip: recordings.Recording) -> tuple[bytes, int]:
    """``clip`` as Home Assistant streams it (module docstring) and its last sound (bytes)."""
    from tests.utterances import room_noise

    last = clip.last_sound
    end = last + int(TAIL_SECONDS * recordings.RATE) * 2
    pcm = clip.pcm[:end]
    if len(pcm) < end:
        pcm += room_noise((end - len(pcm)) / 2 / recordings.RATE, seed=1, dbfs=-60.0)
    return pcm, last


def detector_delays(clips: list[recordings.Recording]) -> tuple[list[float], int]:
    """Milliseconds from each clip's last sound to the detector's last end of speech, and
    the number of ends heard before a last sound."""
    from benchmarks.latency import to_24k
    from wyoming_openai.vad import EndOfSpeechDetector

    delays: list[float] = []
    early = 0
    chunk = 24000 // 100 * 2
    for clip in clips:
        pcm, last = utterance(clip)
        detector = EndOfSpeechDetector()
        audio = to_24k(pcm)
        ends: list[int] = []
        for start in range(0, len(audio), chunk):
            ends += detector.feed(audio[start : start + chunk])
        last_24k = last * 3 // 2
        if ends:
            delays.append((ends[-1] - last_24k) / 48)
            early += sum(1 for end in ends[:-1] if end < last_24k)
    return delays, early


async def _waits(fake: FakeOpenAI, port: int, clips: list[recordings.Recording], runs: int):
    from benchmarks.latency import ha_transcribe

    waits = []
    for index in range(runs):
        pcm, _ = utterance(clips[index % len(clips)])
        run = await ha_transcribe(port, pcm)
        waits.append((run.transcript_at - run.audio_stop_at) * 1000)
        await asyncio.sleep(0.05)  # the spare session is replaced
    return waits


async def _wer(fake: FakeOpenAI, port: int, clips: list[recordings.Recording]) -> float:
    from benchmarks.latency import ha_transcribe
    from tests import speech

    saved = fake.transcriber, fake.finalize_delay
    fake.transcriber = speech.whisper_transcriber
    fake.finalize_delay = 0.0
    references, hypotheses = [], []
    try:
        for clip in clips:
            run = await ha_transcribe(port, utterance(clip)[0], realtime=False)
            references.append(speech.normalize_text(clip.text))
            hypotheses.append(speech.normalize_text(run.text) or "<empty>")
    finally:
        fake.transcriber, fake.finalize_delay = saved
    return 100 * float(jiwer.wer(references, hypotheses))


async def section(
    table: Table,
    fake: FakeOpenAI,
    args: argparse.Namespace,
    with_server: WithServer,
) -> None:
    """The rows of the module docstring, added to ``table``."""
    name = "real voices"
    try:
        clips = recordings.load()
    except FileNotFoundError as error:
        print(f"{name}: {error}")
        for row in ("last sound -> detector's end of speech", "audio-stop -> transcript"):
            table.add(f"{name}: {row}", [])
        return
    delays, early = await asyncio.to_thread(detector_delays, clips)
    table.add(f"{name} ({len(clips)} clips): last sound -> detector's end of speech", delays)
    table.one(f"{name}: ends heard before the last sound (pauses)", early, "ends")
    wers: dict[str, float] = {}

    async def speculative(server: ServerProcess) -> None:
        await asyncio.sleep(1.0)
        for finalize in (0.45, 0.15):
            fake.finalize_delay = finalize
            waits = await _waits(fake, server.port, clips, args.runs)
            label = f"{name}, 0.7 s tail, finalizing in {finalize * 1000:.0f} ms"
            table.add(f"{label}: audio-stop -> transcript", waits)
        wers["speculative commit"] = await _wer(fake, server.port, clips)

    async def at_stop(server: ServerProcess) -> None:
        await asyncio.sleep(0.5)
        wers["commit at audio-stop"] = await _wer(fake, server.port, clips)

    await with_server(fake, args, {}, speculative)
    off = {"WYOMING_OPENAI_STT_SPECULATIVE_COMMIT": "false"}
    await with_server(fake, args, off, at_stop)
    for label, value in wers.items():
        table.one(f"{name}: WER of {len(clips)} clips, {label}", value, "%")
    fake.finalize_delay = 0.15


def summary(values: list[float]) -> str:
    """Median / p95 of ``values`` (for quick prints)."""
    return f"{statistics.median(values):.0f} / {float(np.percentile(values, 95)):.0f}"


if __name__ == "__main__":
    found = recordings.load()
    found_delays, found_early = detector_delays(found)
    print(f"last sound -> end: {summary(found_delays)} ms; ends before: {found_early}")
